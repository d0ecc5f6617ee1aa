//! The consoles in real headless Chromium through WebDriver (Debian's `chromium` and
//! `chromium-driver`), one test per seed flow, end to end: forms filled and submitted as a
//! person would, the shown-once secret read from the page and checked through the service, the
//! QR code scanned from a screenshot of the page. Every page visited is checked for labelled
//! controls and, with axe-core, for WCAG 2 A/AA violations. Screenshots of every page go to
//! `docs/console/` with `TESSERA_CONSOLE_SCREENSHOTS=1`, else to the target's temporary folder.
//!
//! Without `chromedriver` the tests print a skip, except under `CI=true`, where they fail.
//! axe-core is read from `TESSERA_AXE` or `tests/axe/node_modules/axe-core/axe.min.js`
//! (`.ci/test` installs it with npm); under `CI=true` it is required too.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tessera::core::id::{DeviceId, EndpointId, Permission};
use tessera::core::kind::endpoint::Method;
use tessera::{Rejection, TokenService};
use tessera_sql::SqliteStore;

/// One browser at a time: two cores are shared by everything else.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    StdListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A chromedriver this test started; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything one flow needs: the console over SQLite, a browser signed out, the service.
struct Rig {
    client: Client,
    base: String,
    service: TokenService,
    axe: Option<String>,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

async fn rig() -> Option<Rig> {
    let Some(chromedriver) = which("chromedriver") else {
        assert!(
            !ci(),
            "CI=true: chromedriver is missing; install chromium and chromium-driver"
        );
        eprintln!("skipped: chromedriver not found (apt-get install chromium chromium-driver)");
        return None;
    };
    let axe = axe_source();
    assert!(
        !(ci() && axe.is_none()),
        "CI=true: axe-core is missing; run .ci/test"
    );

    let store = SqliteStore::open_in_memory().await.unwrap();
    store.migrate().await.unwrap();
    let service = TokenService::new(store, common::peppers());
    let app = axum::Router::new()
        .route(
            "/signin/{user}",
            get(|Path(user): Path<String>| async move {
                (
                    [(
                        header::SET_COOKIE,
                        format!("user={user}; Path=/; SameSite=Strict"),
                    )],
                    Redirect::to("/admin"),
                )
                    .into_response()
            }),
        )
        .nest(
            "/admin",
            tessera_console::router(service.clone(), common::settings()),
        );
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let port = free_port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    let binary = which("chromium").map(|p| p.display().to_string());
    let mut options = json!({
        "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--window-size=1280,900", "--lang=en-US",
            format!("--user-data-dir={}", profile.path().display()),
        ],
    });
    if let Some(b) = binary {
        options["binary"] = json!(b);
    }
    caps.insert("goog:chromeOptions".into(), options);
    let started = Instant::now();
    let client = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&driver.url)
            .await
        {
            Ok(c) => break c,
            Err(e) if started.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("chromedriver did not start a session: {e}"),
        }
    };
    Some(Rig {
        client,
        base: format!("http://{addr}"),
        service,
        axe,
        _driver: driver,
        _profile: profile,
    })
}

fn axe_source() -> Option<String> {
    let path = std::env::var_os("TESSERA_AXE").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/axe/node_modules/axe-core/axe.min.js")
        },
        PathBuf::from,
    );
    std::fs::read_to_string(path).ok()
}

impl Rig {
    async fn sign_in(&self, user: &str) {
        self.client
            .goto(&format!("{}/signin/{user}", self.base))
            .await
            .unwrap();
    }

    async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}/admin{path}", self.base))
            .await
            .unwrap();
        self.check_page().await;
    }

    async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no {selector} on the page: {e}"))
    }

    async fn link(&self, text: &str) -> fantoccini::elements::Element {
        self.client.find(Locator::LinkText(text)).await.unwrap()
    }

    async fn button(&self, text: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::XPath(&format!(
                "//button[normalize-space()='{text}']"
            )))
            .await
            .unwrap_or_else(|e| panic!("no button {text}: {e}"))
    }

    async fn fill(&self, selector: &str, text: &str) {
        self.css(selector).await.send_keys(text).await.unwrap();
    }

    async fn value(&self, selector: &str) -> String {
        self.css(selector)
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    async fn set_value(&self, selector: &str, value: &str) {
        self.client
            .execute(
                "document.querySelector(arguments[0]).value = arguments[1];",
                vec![json!(selector), json!(value)],
            )
            .await
            .unwrap();
    }

    async fn body(&self) -> String {
        self.css("body").await.text().await.unwrap()
    }

    /// Every control has a label, the page has no inline script, and axe finds no WCAG 2 A/AA
    /// violation.
    async fn check_page(&self) {
        let unlabelled = self
            .client
            .execute(
                "return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button'))\
                 .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())\
                 .map(e => e.outerHTML.slice(0, 120));",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(unlabelled, json!([]), "controls without a label");
        let inline = self
            .client
            .execute(
                "return Array.from(document.scripts).filter(s => !s.src).length;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(inline, json!(0), "inline script");
        if let Some(axe) = &self.axe {
            // The CSP forbids inline script in the page; WebDriver's execute is not inline.
            self.client.execute(axe, vec![]).await.unwrap();
            let loaded = self
                .client
                .execute(
                    "return typeof axe === 'object' && typeof axe.run === 'function';",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(loaded, json!(true), "axe-core did not load");
            let violations = self
                .client
                .execute_async(
                    "const done = arguments[arguments.length - 1];\
                     axe.run(document, { runOnly: ['wcag2a', 'wcag2aa'] })\
                       .then(r => done(r.violations.map(v => v.id + ': ' + v.help + ' ' + v.nodes.map(n => n.target.join(' ')).join(', '))))\
                       .catch(e => done(['axe failed: ' + e]));",
                    vec![],
                )
                .await
                .unwrap();
            let url = self.client.current_url().await.unwrap();
            assert_eq!(violations, json!([]), "axe on {url}");
        }
    }

    async fn submit(&self, text: &str) {
        self.button(text).await.click().await.unwrap();
        self.check_page().await;
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        // The README's pictures are refreshed on request only, so a test run leaves the work
        // tree clean: `TESSERA_CONSOLE_SCREENSHOTS=1 cargo test -p tessera-console --test browser`.
        let dir = if std::env::var_os("TESSERA_CONSOLE_SCREENSHOTS").is_some() {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/console")
        } else {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
        };
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn done(self) {
        self.client.close().await.unwrap();
    }
}

macro_rules! rig {
    () => {{
        let _one = BROWSER.lock().await;
        match rig().await {
            Some(r) => (r, _one),
            None => return,
        }
    }};
}

/// deployment-token.txt: fill the Generate Token window, read the token shown once, validate it
/// through the service, expire it through the confirmation, see it refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_generate_then_expire() {
    let (r, _one) = rig!();
    r.sign_in("alice").await;
    r.check_page().await;
    r.shot("overview").await;
    r.open("/deployment").await;
    r.link("Generate Token").await.click().await.unwrap();
    r.check_page().await;
    r.fill("#name", "Wave 1").await;
    r.css("#expiry_on").await.click().await.unwrap();
    r.set_value("#expires", "2099-12-31").await;
    r.shot("deployment-generate").await;
    r.submit("Generate Token").await;
    let token = r.value("#token").await;
    assert!(token.starts_with("tsr_dep_"), "{token}");
    assert_eq!(
        r.value("#command").await,
        common::TEMPLATE.replace("{token}", &token)
    );
    r.shot("deployment-shown-once").await;
    assert!(
        r.service
            .deployment()
            .validate(&token)
            .await
            .unwrap()
            .is_ok()
    );

    r.link("Done").await.click().await.unwrap();
    r.check_page().await;
    let list = r.body().await;
    assert!(list.contains("Wave 1") && list.contains("Latest"));
    // The seed's exception: the current installer command, with the most recent token.
    assert_eq!(
        r.value("#command").await,
        common::TEMPLATE.replace("{token}", &token)
    );
    r.shot("deployment-manage").await;
    r.css("details.menu summary").await.click().await.unwrap();
    r.link("Expire Token").await.click().await.unwrap();
    r.check_page().await;
    r.shot("deployment-expire-confirm").await;
    r.submit("Confirm").await;
    assert!(r.body().await.contains("expired"));
    assert!(
        !r.body().await.contains(&token),
        "no command with an expired token"
    );
    assert_eq!(
        r.service
            .deployment()
            .validate(&token)
            .await
            .unwrap()
            .unwrap_err(),
        Rejection::Expired
    );
    r.done().await;
}

/// onboarding-token.txt: create a token with a policy, group and limit; decode the QR code as
/// rendered in the page; enroll a device with it; the detail page lists the device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_qr_scans_to_the_token() {
    let (r, _one) = rig!();
    r.sign_in("alice").await;
    r.open("/onboarding/new").await;
    r.fill("#policy", "kiosk").await;
    r.fill("#group", "lobby").await;
    r.css("#limit-n").await.click().await.unwrap();
    let uses = r.css("#uses").await;
    uses.clear().await.unwrap();
    uses.send_keys("3").await.unwrap();
    r.css("#keep").await.click().await.unwrap();
    r.shot("onboarding-create").await;
    r.submit("Create token").await;
    let token = r.value("#token").await;
    r.shot("onboarding-qr").await;
    // Scan the code as drawn by the browser.
    let png = r.css("#qr svg").await.screenshot().await.unwrap();
    let img = image::load_from_memory(&png).unwrap().to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the screenshot");
    let (_, scanned) = grids[0].decode().unwrap();
    assert_eq!(scanned, token);
    let enrolled = r
        .service
        .onboarding()
        .redeem(&scanned, &DeviceId::parse("tablet-7").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(enrolled.group.as_str(), "lobby");
    assert_eq!(enrolled.remaining, Some(2));
    r.link("Done").await.click().await.unwrap();
    r.check_page().await;
    let detail = r.body().await;
    assert!(detail.contains("tablet-7") && detail.contains("1 of 3") && !detail.contains(&token));
    r.shot("onboarding-detail").await;
    // Kept sealed: the QR code can be shown again, and scans to the same token.
    r.submit("Show QR code again").await;
    r.check_page().await;
    let png = r.css("#qr svg").await.screenshot().await.unwrap();
    let img = image::load_from_memory(&png).unwrap().to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare(img);
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code shown again");
    assert_eq!(grids[0].decode().unwrap().1, token);
    r.shot("onboarding-qr-again").await;
    r.open("/onboarding/bulk").await;
    r.fill("#lines", "kiosk, lobby\nstaff, sales").await;
    r.submit("Generate tokens").await;
    r.shot("onboarding-bulk").await;
    r.open("/onboarding").await;
    r.shot("onboarding-list").await;
    r.done().await;
}

/// application-token.txt: create a token, copy it from the shown-once screen, use it from two
/// addresses, block one after confirming, and see its next request refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_block_an_address() {
    let (r, _one) = rig!();
    r.sign_in("alice").await;
    r.open("/applications").await;
    r.link("+ Create token").await.click().await.unwrap();
    r.check_page().await;
    r.fill("#name", "siem-feed").await;
    r.fill("#description", "Threat feed pushed by the SIEM")
        .await;
    r.css("#access-third-party-feeds")
        .await
        .click()
        .await
        .unwrap();
    r.shot("application-create").await;
    r.submit("OK").await;
    let token = r.value("#token").await;
    assert!(r.body().await.contains("no longer available for copying"));
    r.shot("application-shown-once").await;
    let blocked: IpAddr = "192.0.2.10".parse().unwrap();
    let other: IpAddr = "198.51.100.7".parse().unwrap();
    let apps = r.service.application();
    assert!(apps.validate(&token, blocked).await.unwrap().is_ok());
    assert!(apps.validate(&token, other).await.unwrap().is_ok());

    r.link("Close").await.click().await.unwrap();
    r.check_page().await;
    r.shot("application-list").await;
    r.link("siem-feed").await.click().await.unwrap();
    r.check_page().await;
    assert!(r.body().await.contains("198.51.100.7"));
    r.css("input[value='192.0.2.10']")
        .await
        .click()
        .await
        .unwrap();
    r.shot("application-addresses").await;
    r.submit("Block").await;
    r.shot("application-block-confirm").await;
    r.submit("Block").await;
    assert!(r.body().await.contains("Blocked"));
    assert_eq!(
        apps.validate(&token, blocked).await.unwrap().unwrap_err(),
        Rejection::IpBlocked
    );
    assert!(apps.validate(&token, other).await.unwrap().is_ok());
    r.done().await;
}

/// auth-token.txt: an administrator generates an authtoken for a technician; the Generated by
/// column says so, in the administrator's list and in the technician's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_admin_generates_for_a_technician() {
    let (r, _one) = rig!();
    r.sign_in("alice").await;
    r.open("/technician-authtokens").await;
    r.css("#gen-tech")
        .await
        .select_by_value("bob")
        .await
        .unwrap();
    r.submit("Generate Authtoken").await;
    assert!(r.body().await.contains("For technician bob"));
    r.fill("#name", "night-unlock").await;
    r.css("#scope-unlock_account").await.click().await.unwrap();
    let amount = r.css("#amount").await;
    amount.clear().await.unwrap();
    amount.send_keys("12").await.unwrap();
    r.css("#unit").await.select_by_value("h").await.unwrap();
    r.shot("auth-generate").await;
    r.submit("Generate Authtoken").await;
    let token = r.value("#token").await;
    let held = [Permission::parse("unlock_account").unwrap()].into();
    let access = r
        .service
        .auth()
        .check(&token, &Permission::parse("unlock_account").unwrap(), &held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(access.owner().as_str(), "bob");
    r.link("Done").await.click().await.unwrap();
    r.check_page().await;
    let row = r
        .client
        .find(Locator::XPath("//tr[td[normalize-space()='night-unlock']]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        row.contains("bob") && row.trim_end().ends_with("alice"),
        "Generated by: {row}"
    );
    r.shot("auth-technicians").await;
    // The technician sees who generated it in their own list.
    r.sign_in("bob").await;
    r.open("/account/authtokens").await;
    let mine = r.body().await;
    assert!(mine.contains("night-unlock") && mine.contains("alice") && !mine.contains(&token));
    r.shot("auth-my-account").await;
    // bob's own token, then delete both of his through the check boxes and one delete.
    r.link("+ Generate Authtoken").await.click().await.unwrap();
    r.check_page().await;
    r.fill("#name", "helpdesk").await;
    r.css("#scope-reset_password").await.click().await.unwrap();
    r.submit("Generate Authtoken").await;
    r.link("Done").await.click().await.unwrap();
    for cb in r
        .client
        .find_all(Locator::Css("input[name=id]"))
        .await
        .unwrap()
    {
        cb.click().await.unwrap();
    }
    r.submit("Delete selected").await;
    r.submit("Delete").await;
    assert!(r.body().await.contains("No active authtoken"));
    assert!(
        r.service
            .auth()
            .check(&token, &Permission::parse("unlock_account").unwrap(), &held)
            .await
            .unwrap()
            .is_err()
    );
    r.done().await;
}

/// endpoint-tokens.txt: turn token authentication on, add a secondary token in the Token
/// settings dialog (masked, revealed, copied), assign it, see the request accepted and counted
/// as that application's traffic, and switch the Enabled toggle off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_secondary_assigned_and_toggled() {
    let (r, _one) = rig!();
    r.sign_in("alice").await;
    r.open("/endpoints/0").await;
    r.submit("Turn on token authentication").await;
    let get_primary = r.value("#primary-GET").await;
    r.shot("endpoint-primaries").await;
    r.open("/endpoint-tokens").await;
    r.link("+ Add").await.click().await.unwrap();
    r.check_page().await;
    r.fill("#name", "crm").await;
    r.fill("#description", "The CRM's order sync").await;
    r.shot("endpoint-token-settings").await;
    r.submit("Save").await;
    let field = r.css("#token").await;
    assert_eq!(
        field.attr("type").await.unwrap().as_deref(),
        Some("password")
    );
    // Reveal from the keyboard.
    let reveal = r.button("Reveal").await;
    reveal.send_keys(&Key::Enter.to_string()).await.unwrap();
    assert_eq!(
        r.css("#token").await.attr("type").await.unwrap().as_deref(),
        Some("text")
    );
    let secondary = r.value("#token").await;
    assert_eq!(secondary.len(), 64);
    r.shot("endpoint-token-created").await;
    r.link("Assign endpoint tokens")
        .await
        .click()
        .await
        .unwrap();
    r.check_page().await;
    r.css("#map-0-GET").await.click().await.unwrap();
    r.shot("endpoint-assign").await;
    r.submit("Save").await;
    let orders = EndpointId::parse("orders").unwrap();
    let ep = r.service.endpoint();
    assert!(
        ep.check(&orders, Method::Get, &secondary, None)
            .await
            .unwrap()
            .is_ok()
    );
    assert!(
        ep.check(&orders, Method::Get, &get_primary, None)
            .await
            .unwrap()
            .is_ok()
    );
    assert!(
        ep.check(&orders, Method::Post, &secondary, None)
            .await
            .unwrap()
            .is_err()
    );
    r.open("/endpoints/0/traffic").await;
    assert!(r.body().await.contains("crm"));
    r.shot("endpoint-traffic").await;
    r.open("/endpoints/0").await;
    r.shot("endpoint-token-tab").await;
    r.open("/endpoint-tokens").await;
    r.shot("endpoint-tokens").await;
    r.css("button[role=switch]").await.click().await.unwrap();
    r.check_page().await;
    assert!(
        ep.check(&orders, Method::Get, &secondary, None)
            .await
            .unwrap()
            .is_err()
    );
    r.done().await;
}

/// Every control works from the keyboard: a form filled and sent with keys alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_only_generate() {
    let (r, _one) = rig!();
    r.sign_in("alice").await;
    r.open("/deployment/new").await;
    let name = r.css("#name").await;
    name.click().await.unwrap();
    name.send_keys("Keyboard wave").await.unwrap();
    // Tab to the check box, tick it with the space bar, then send the form with Enter.
    r.client
        .active_element()
        .await
        .unwrap()
        .send_keys(&format!("{}", Key::Tab))
        .await
        .unwrap();
    let focused = r.client.active_element().await.unwrap();
    assert_eq!(
        focused.attr("id").await.unwrap().as_deref(),
        Some("expiry_on")
    );
    focused.send_keys(" ").await.unwrap();
    assert_eq!(
        r.css("#expiry_on")
            .await
            .prop("checked")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    r.css("#expiry_on").await.click().await.unwrap();
    r.css("#name")
        .await
        .send_keys(&Key::Enter.to_string())
        .await
        .unwrap();
    r.check_page().await;
    let token = r.value("#token").await;
    assert!(
        r.service
            .deployment()
            .validate(&token)
            .await
            .unwrap()
            .is_ok()
    );
    r.done().await;
}
