//! `tessera onboarding ...`: device enrollment tokens, QR codes and bulk issuance.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tessera::core::format;
use tessera::core::id::DeviceId;
use tessera::core::kind::onboarding::{DeviceBinding, UsageLimit};
use tessera::core::{Kind, Secret};
use tessera::onboarding::NewOnboarding;
use tessera::{Issued, Rejection};
use tessera_qr::{AndroidProvisioning, EcLevel, Options, Payload, TerminalColors, Uri};

use crate::cli::{OnboardingCmd, OnboardingSpec, QrArgs, QrFormat};
use crate::cmd::deployment::rejected_json;
use crate::cmd::general::state_rejection;
use crate::context::{Ctx, create_new_private, read_token};
use crate::error::{CliError, Result};
use crate::output::{self, opt_time, summary_with, uses};
use crate::parse;

/// The most tokens one `bulk` call creates.
const BULK_MAX: u64 = 100_000;
/// Tokens stored per atomic batch during `bulk`.
const BULK_CHUNK: usize = 100;

/// Run an onboarding command.
pub(crate) async fn run(ctx: &Ctx, cmd: OnboardingCmd) -> Result<()> {
    let svc = ctx.service.onboarding();
    match cmd {
        OnboardingCmd::Create {
            spec,
            device,
            first_device,
            short_code,
            qr,
            out,
            qr_args,
        } => {
            if qr.is_none() {
                let given = qr_args.given();
                if !given.is_empty() {
                    return Err(CliError::usage(format!(
                        "{} {} the QR code, and none is drawn; add --qr svg|png|terminal (or drop {})",
                        given.join(", "),
                        if given.len() == 1 {
                            "only shapes"
                        } else {
                            "only shape"
                        },
                        if given.len() == 1 { "it" } else { "them" }
                    )));
                }
            }
            let plan = qr.map(|f| QrPlan::new(f, out, &qr_args)).transpose()?;
            let mut new = new_spec(ctx, &spec, &spec.group)?;
            if let Some(d) = device {
                new = new.binding(DeviceBinding::Device(DeviceId::parse(d)?));
            } else if first_device {
                new = new.binding(DeviceBinding::FirstDevice(None));
            }
            if short_code {
                new = new.short_code();
            }
            let issued = svc.create(new, &ctx.principal).await?;
            let mut extra = vec![
                ("policy", Value::from(spec.policy.as_str())),
                ("group", Value::from(spec.group.as_str())),
            ];
            match &plan {
                // A file first, so the result can say where the code went.
                Some(p) if p.out.is_some() => {
                    if let Some(path) = p.render(&issued.secret, ctx.out.json)? {
                        extra.push(("qr_file", Value::from(path.display().to_string())));
                    }
                    ctx.show_created("onboarding token", &issued, &extra).await
                }
                // The terminal code after the token's details.
                Some(p) => {
                    ctx.show_created("onboarding token", &issued, &extra)
                        .await?;
                    p.render(&issued.secret, ctx.out.json).map(drop)
                }
                None => ctx.show_created("onboarding token", &issued, &extra).await,
            }
        }
        OnboardingCmd::Bulk {
            spec,
            also_groups,
            count,
            out,
        } => bulk(ctx, &spec, &also_groups, count, out.as_deref()).await,
        OnboardingCmd::Redeem { device, token } => {
            let token = read_token(token)?;
            let device = DeviceId::parse(device)?;
            match svc.redeem(&token, &device).await? {
                Ok(e) => {
                    let left = e
                        .remaining
                        .map_or_else(|| String::from("unlimited"), |n| n.to_string());
                    let text = if e.repeated {
                        format!(
                            "device {device} was already enrolled with token {} (nothing used): apply policy {} and join group {} ({left} uses left)",
                            e.token, e.policy, e.group
                        )
                    } else {
                        format!(
                            "enrolled device {device} with token {}: apply policy {} and join group {} ({left} uses left)",
                            e.token, e.policy, e.group
                        )
                    };
                    let enrolled_at = output::rfc3339(e.enrolled_at);
                    ctx.out.result(
                        &text,
                        &json!({
                            "accepted": true,
                            "token": e.token,
                            "device": device,
                            "policy": e.policy,
                            "group": e.group,
                            "remaining": e.remaining,
                            "repeated": e.repeated,
                            "enrolled_at": enrolled_at,
                        }),
                    )
                }
                Err(rej) => {
                    rejected_json(ctx, rej)?;
                    Err(CliError::rejected(rej, "onboarding token"))
                }
            }
        }
        OnboardingCmd::Revoke { ids } => {
            let mut targets = Vec::new();
            for id in &ids {
                let id = ctx.resolve_id(id).await?;
                let r = ctx.record(id).await?;
                if r.kind() != Kind::Onboarding {
                    return Err(CliError::not_found(format!(
                        "{id} is {} token, not an onboarding token; use `tessera revoke`",
                        output::article(r.kind())
                    )));
                }
                targets.push(r);
            }
            let list: Vec<String> = targets
                .iter()
                .map(|r| format!("{} ({})", r.id, r.hint))
                .collect();
            ctx.out.confirm(&format!(
                "revoke {} onboarding token(s) for good: {}?",
                targets.len(),
                list.join(", ")
            ))?;
            let mut done = Vec::new();
            for r in targets {
                done.push(svc.revoke(r.id, &ctx.principal).await?);
            }
            let human: Vec<String> = done
                .iter()
                .map(|t| format!("revoked onboarding token {} ({})", t.id, t.hint))
                .collect();
            ctx.out.result(
                &human.join("\n"),
                &Value::Array(done.iter().map(output::summary_json).collect()),
            )
        }
        OnboardingCmd::Qr {
            format,
            out,
            qr_args,
            token,
        } => {
            let plan = QrPlan::new(format, out, &qr_args)?;
            if let Some(id) = token.as_deref().filter(|t| looks_like_id(t)) {
                let id = ctx.resolve_id(id).await?;
                let r = ctx.record(id).await?;
                if r.kind() != Kind::Onboarding {
                    return Err(CliError::not_found(format!(
                        "{id} is {} token, not an onboarding token",
                        output::article(r.kind())
                    )));
                }
                let secret = svc.reveal(id).await?;
                let written = plan.render(&secret, ctx.out.json)?;
                drop(secret);
                return qr_written(ctx, &r.summary(ctx.now()), written);
            }
            let token = read_token(token)?;
            let presented = match format::parse(Kind::Onboarding, &token) {
                Ok(p) => p,
                Err(e) => {
                    rejected_json(ctx, Rejection::Malformed)?;
                    return Err(CliError::usage(format!("not an onboarding token: {e}")));
                }
            };
            let Some(record) = ctx.find_presented(&presented).await? else {
                rejected_json(ctx, Rejection::NotFound)?;
                return Err(CliError::rejected(Rejection::NotFound, "onboarding token"));
            };
            drop(presented);
            let state = record.effective_state(ctx.now());
            if let Some(rej) = state_rejection(state) {
                rejected_json(ctx, rej)?;
                return Err(CliError::rejected(rej, "onboarding token"));
            }
            let secret = Secret::from_presented(token.as_str());
            let written = plan.render(&secret, ctx.out.json)?;
            qr_written(ctx, &record.summary(ctx.now()), written)
        }
        OnboardingCmd::List => {
            let listing = svc.list().await?;
            let mut rows = Vec::new();
            let mut json = Vec::new();
            for l in &listing {
                let t = &l.token;
                let devices: Vec<String> = l.devices.iter().map(|e| e.device.to_string()).collect();
                rows.push(vec![
                    t.id.to_string(),
                    output::state_word(t.state).to_owned(),
                    l.data.policy.to_string(),
                    l.data.group.to_string(),
                    uses(t),
                    opt_time(t.expires_at),
                    binding(&l.data.binding),
                    output::cut(&devices.join(","), 40),
                    t.hint.clone(),
                ]);
                json.push(summary_with(
                    t,
                    json!({
                        "policy": l.data.policy,
                        "group": l.data.group,
                        "binding": l.data.binding,
                        "devices": l.devices.iter().map(|e| json!({
                            "device": e.device,
                            "at": output::rfc3339(e.at),
                        })).collect::<Vec<_>>(),
                    }),
                ));
            }
            ctx.out.listing(
                &["ID", "STATE", "POLICY", "GROUP", "USES", "EXPIRES", "BINDING", "DEVICES", "HINT"],
                &rows,
                &Value::Array(json),
                "no onboarding tokens; create one with `tessera onboarding create --policy P --group G`",
            )
        }
    }
}

/// Whether `ONBOARDING QR`'s argument is a token id (or an id prefix) rather than a token: 6 to
/// 32 hexadecimal digits, which no onboarding token (prefixed, or a short code) parses as.
fn looks_like_id(s: &str) -> bool {
    (6..=32).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_hexdigit())
        && format::parse(Kind::Onboarding, s).is_err()
}

/// Say where a QR code went.
fn qr_written(
    ctx: &Ctx,
    t: &tessera::core::record::TokenSummary,
    written: Option<PathBuf>,
) -> Result<()> {
    match written {
        Some(path) => ctx.out.result(
            &format!(
                "wrote the QR code of onboarding token {} to {}",
                t.id,
                path.display()
            ),
            &json!({ "token": t, "qr_file": path.display().to_string() }),
        ),
        None if ctx.out.json => ctx.out.json(&json!({ "token": t })),
        None => Ok(()),
    }
}

fn binding(b: &DeviceBinding) -> String {
    match b {
        DeviceBinding::Any => String::from("any"),
        DeviceBinding::Device(d) => format!("device {d}"),
        DeviceBinding::FirstDevice(None) => String::from("first device"),
        DeviceBinding::FirstDevice(Some(d)) => format!("first device {d}"),
    }
}

/// The token settings an [`OnboardingSpec`] names, for `group`.
fn new_spec(ctx: &Ctx, spec: &OnboardingSpec, group: &str) -> Result<NewOnboarding> {
    let mut new = NewOnboarding::new(spec.policy.as_str(), group)?;
    if spec.unlimited {
        new = new.limit(UsageLimit::Unlimited);
    } else if let Some(n) = spec.uses {
        new = new.limit(UsageLimit::uses(n)?);
    }
    if let Some(e) = &spec.expires {
        new = new.expires_at(parse::expiry(e, ctx.now())?);
    }
    Ok(new.keep_sealed(spec.keep_sealed))
}

/// `onboarding bulk`: batches of atomic bulk issuance, a progress bar, secrets written once.
async fn bulk(
    ctx: &Ctx,
    spec: &OnboardingSpec,
    also: &[String],
    count: u32,
    out: Option<&Path>,
) -> Result<()> {
    let mut groups = vec![spec.group.clone()];
    groups.extend(also.iter().cloned());
    let total = u64::from(count) * groups.len() as u64;
    if total == 0 || total > BULK_MAX {
        return Err(CliError::usage(format!(
            "bulk creates 1 to {BULK_MAX} tokens at once, not {total}; change --count or the groups"
        )));
    }
    // Check every setting before anything is stored.
    let mut specs = Vec::new();
    for g in &groups {
        for _ in 0..count {
            specs.push((g.clone(), new_spec(ctx, spec, g)?));
        }
    }
    // Open the destination before anything is stored, so the secrets have somewhere to go.
    let (mut sink, to_file): (Box<dyn Write>, bool) = match out {
        Some(p) if p.as_os_str() != "-" => (
            Box::new(std::io::BufWriter::new(create_new_private(p).map_err(|e| {
                CliError::usage(format!(
                    "cannot create {}: {e}; the secrets file is never overwritten, pick a new path",
                    p.display()
                ))
            })?)),
            true,
        ),
        _ => (Box::new(std::io::stdout()), false),
    };
    let bar = ProgressBar::new(total);
    if std::io::stderr().is_terminal() {
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message("creating onboarding tokens");
    } else {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut created: u64 = 0;
    let svc = ctx.service.onboarding();
    let mut rest = specs.into_iter().peekable();
    while rest.peek().is_some() {
        let chunk: Vec<(String, NewOnboarding)> = rest.by_ref().take(BULK_CHUNK).collect();
        let (names, batch): (Vec<String>, Vec<NewOnboarding>) = chunk.into_iter().unzip();
        let issued = match svc.bulk(batch, &ctx.principal).await {
            Ok(i) => i,
            Err(e) => {
                bar.abandon();
                let e = CliError::from(e);
                return Err(if created == 0 {
                    e
                } else {
                    CliError::failure(format!(
                        "{e}; {created} tokens were created before the failure and their secrets written"
                    ))
                });
            }
        };
        for ((group, i), policy) in names
            .iter()
            .zip(&issued)
            .zip(std::iter::repeat(&spec.policy))
        {
            write_secret(&mut sink, ctx.out.json, i, group, policy)?;
        }
        sink.flush().map_err(write_failed)?;
        created += issued.len() as u64;
        bar.set_position(created);
    }
    bar.finish_and_clear();
    drop(sink);
    if to_file {
        let path = out.map(|p| p.display().to_string()).unwrap_or_default();
        ctx.out.result(
            &format!(
                "created {created} onboarding tokens; their secrets are in {path} (mode 0600)"
            ),
            &json!({ "created": created, "out": path, "shown_once": true }),
        )?;
    }
    eprintln!("{}", output::SHOWN_ONCE);
    Ok(())
}

fn write_secret(
    sink: &mut dyn Write,
    json: bool,
    i: &Issued,
    group: &str,
    policy: &str,
) -> Result<()> {
    let line = if json {
        json!({
            "id": i.token.id,
            "group": group,
            "policy": policy,
            "expires_at": i.token.expires_at.map(output::rfc3339),
            "secret": i.secret.expose_secret(),
        })
        .to_string()
    } else {
        format!(
            "{}\t{group}\t{policy}\t{}",
            i.token.id,
            i.secret.expose_secret()
        )
    };
    writeln!(sink, "{line}").map_err(write_failed)
}

fn write_failed(e: std::io::Error) -> CliError {
    CliError::failure(format!(
        "cannot write the secrets: {e}; the tokens already created cannot be shown again, revoke them"
    ))
}

/// A QR code to draw, checked before any token is created.
#[derive(Debug)]
struct QrPlan {
    format: QrFormat,
    out: Option<PathBuf>,
    carrier: Carrier,
    options: Options,
}

#[derive(Debug)]
enum Carrier {
    Text,
    Uri(Uri),
    Android(AndroidProvisioning),
}

impl QrPlan {
    fn new(format: QrFormat, out: Option<PathBuf>, args: &QrArgs) -> Result<Self> {
        let ec = match args
            .ec
            .as_deref()
            .unwrap_or("m")
            .to_ascii_lowercase()
            .as_str()
        {
            "l" => EcLevel::L,
            "m" => EcLevel::M,
            "q" => EcLevel::Q,
            "h" => EcLevel::H,
            _ => return Err(CliError::usage("--ec must be l, m, q or h")),
        };
        match (format, &out) {
            (QrFormat::Svg | QrFormat::Png, None) => {
                return Err(CliError::usage("an SVG or PNG QR code needs --out FILE"));
            }
            (QrFormat::Terminal, Some(_)) => {
                return Err(CliError::usage(
                    "--out is for svg and png; the terminal format prints the code",
                ));
            }
            (_, Some(p)) if p.exists() => {
                return Err(CliError::usage(format!(
                    "{} exists; a QR code holds a secret and is never written over a file, pick a new path",
                    p.display()
                )));
            }
            _ => {}
        }
        let carrier = match (&args.uri, &args.android_component) {
            (Some(u), _) => Carrier::Uri(Uri::parse(u)?),
            (None, Some(c)) => {
                let a = AndroidProvisioning::new(
                    c,
                    args.android_download.as_deref().unwrap_or_default(),
                    args.android_checksum.as_deref().unwrap_or_default(),
                )?;
                Carrier::Android(match &args.android_extras_key {
                    Some(k) => a.with_extras_key(k)?,
                    None => a,
                })
            }
            (None, None) => Carrier::Text,
        };
        let colors = if std::io::stdout().is_terminal() {
            TerminalColors::Ansi
        } else {
            TerminalColors::DarkOnLight
        };
        Ok(Self {
            format,
            out,
            carrier,
            options: Options::default()
                .with_ec_level(ec)
                .with_terminal_colors(colors),
        })
    }

    /// Draw the code: into the file (returned), or on the terminal (standard error with
    /// `--json`, so standard output stays JSON).
    fn render(&self, secret: &Secret, json: bool) -> Result<Option<PathBuf>> {
        let payload = match &self.carrier {
            Carrier::Text => Payload::text(secret),
            Carrier::Uri(u) => Payload::uri(secret, u),
            Carrier::Android(a) => Payload::android(secret, a),
        };
        let bytes = match self.format {
            QrFormat::Svg => tessera_qr::render_svg(&payload, &self.options)?.into_bytes(),
            QrFormat::Png => tessera_qr::render_png(&payload, &self.options)?,
            QrFormat::Terminal => {
                let text = tessera_qr::render_terminal(&payload, &self.options)?;
                if json {
                    eprint!("{text}");
                } else {
                    print!("{text}");
                }
                return Ok(None);
            }
        };
        let Some(path) = &self.out else {
            return Ok(None);
        };
        let mut f = create_new_private(path).map_err(|e| {
            CliError::usage(format!(
                "cannot create {}: {e}; pick a new path",
                path.display()
            ))
        })?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| CliError::failure(format!("cannot write {}: {e}", path.display())))?;
        Ok(Some(path.clone()))
    }
}
