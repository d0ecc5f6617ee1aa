//! No type that holds a secret, or is derived from one, prints it: every such value is formatted
//! with `{:?}`, `{:#?}` and `{}` (where it has `Display`), and the output is searched for the
//! secret, any long piece of its body, and the pepper's key.
#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] functions")]

use std::fmt::{Debug, Display};
use std::net::{IpAddr, Ipv4Addr};

use tessera_core::audit::{Actor, AuditAction, AuditEvent};
use tessera_core::digest::{Hint, KeyId, Pepper, Peppers};
use tessera_core::format::{self, Entropy, Spelling};
use tessera_core::id::{
    ApplicationName, Description, DeviceId, EndpointId, TokenId, TokenName, UserId,
};
use tessera_core::kind::application::AccessTypes;
use tessera_core::kind::auth::Expiry;
use tessera_core::kind::endpoint::{EndpointData, Method};
use tessera_core::kind::onboarding::UsageLimit;
use tessera_core::kind::{ApplicationData, KindData};
use tessera_core::lifecycle::State;
use tessera_core::record::TokenRecord;
use tessera_core::validate::Rejection;
use tessera_core::{Error, FormatError, Kind, Secret};
use time::macros::datetime;

/// Longest piece of a secret any output may show: the hint shows four body characters.
const WINDOW: usize = 8;

/// What must never appear: the whole texts, and every `WINDOW`-long piece of them.
struct Needles(Vec<String>);

impl Needles {
    fn new() -> Self {
        Self(Vec::new())
    }

    /// The whole text, and every `WINDOW`-long piece of it.
    fn add(&mut self, secret: &str) {
        self.0.push(secret.to_owned());
        let chars: Vec<char> = secret.chars().collect();
        for w in chars.windows(WINDOW) {
            self.0.push(w.iter().collect());
        }
    }

    fn check(&self, what: &str, out: &str) {
        for n in &self.0 {
            assert!(!out.contains(n.as_str()), "{what} printed `{n}`: {out}");
        }
    }

    fn debug<T: Debug + ?Sized>(&self, what: &str, v: &T) {
        self.check(what, &format!("{v:?}"));
        self.check(what, &format!("{v:#?}"));
    }

    fn both<T: Debug + Display + ?Sized>(&self, what: &str, v: &T) {
        self.debug(what, v);
        self.check(what, &format!("{v}"));
        self.check(what, &v.to_string());
    }
}

/// The secret texts of one token: as issued, its canonical form, and its body (a prefixed
/// token's prefix is public, so pieces are taken from the body only), and the pepper's key.
fn needles_for(secret: &Secret, canonical: &[u8], pepper: &Pepper) -> Needles {
    let text = secret.expose_secret();
    let mut n = Needles::new();
    if let Some(body) = text.strip_prefix("tsr_").map(|_| &text[8..]) {
        n.0.push(text.to_owned());
        n.add(body);
    } else {
        n.add(text);
        n.add(&String::from_utf8_lossy(canonical));
    }
    n.add(&pepper.expose_hex());
    n
}

fn tokens() -> Vec<(Kind, Secret)> {
    let mut v = Vec::new();
    for kind in Kind::ALL {
        for bits in [128, 256, 512] {
            let e = Entropy::bits(bits).unwrap();
            v.push((
                kind,
                Secret::generate_with(kind, Spelling::Prefixed, e).unwrap(),
            ));
        }
    }
    v.push((
        Kind::Endpoint,
        Secret::generate_with(Kind::Endpoint, Spelling::Plain64, Entropy::DEFAULT).unwrap(),
    ));
    v.push((
        Kind::Onboarding,
        Secret::generate_with(Kind::Onboarding, Spelling::ShortCode, Entropy::DEFAULT).unwrap(),
    ));
    v
}

fn record(
    kind: Kind,
    spelling: Spelling,
    digest: tessera_core::digest::Digest,
    hint: Hint,
) -> TokenRecord {
    let t = datetime!(2026-03-01 9:00 UTC);
    let data = match kind {
        Kind::Application => KindData::Application(ApplicationData {
            name: ApplicationName::parse("feed").unwrap(),
            description: Description::parse("").unwrap(),
            access: AccessTypes::new([
                tessera_core::id::AccessType::parse("third-party-feeds").unwrap()
            ])
            .unwrap(),
        }),
        _ => KindData::Endpoint(EndpointData::Secondary {
            name: TokenName::parse("crm").unwrap(),
            description: Description::parse("crm").unwrap(),
            enabled: true,
        }),
    };
    TokenRecord {
        id: TokenId::generate().unwrap(),
        digest,
        spelling,
        hint,
        sealed: None,
        state: State::Active,
        created_at: t,
        created_by: Actor::User(UserId::parse("admin").unwrap()),
        generated_by: Some(UserId::parse("admin").unwrap()),
        expires_at: Some(t + time::Duration::days(1)),
        last_used_at: None,
        activated_at: t,
        grace_until: None,
        successor: None,
        limit: UsageLimit::Unlimited,
        uses: 0,
        data,
    }
}

/// Variants of a token a person might paste: typo'd, truncated, quoted, of another kind.
fn damaged(text: &str) -> Vec<String> {
    let mid = text.len() / 2;
    let flip = if &text[mid..=mid] == "x" { "y" } else { "x" };
    vec![
        format!("{}{flip}{}", &text[..mid], &text[mid + 1..]),
        text[..text.len() - 1].to_owned(),
        format!("{text}0"),
        format!("\"{text}\""),
        format!(" {text}"),
        format!("{text}\n"),
        format!("Bearer {text}"),
        text.replace('-', "_"),
        text.to_ascii_lowercase(),
    ]
}

#[test]
fn nothing_derived_from_a_secret_prints_it() {
    let pepper = Pepper::generate(KeyId(3)).unwrap();
    let previous = Pepper::generate(KeyId(2)).unwrap();
    let previous_hex = previous.expose_hex();
    for (kind, secret) in tokens() {
        let text = secret.expose_secret();
        let presented = format::parse(kind, text).unwrap();
        let mut n = needles_for(&secret, presented.canonical(), &pepper);
        n.add(&previous_hex);

        n.both("secret", &secret);
        n.debug("presented", &presented);
        n.debug("pepper", &pepper);
        let digest = pepper.digest(&presented);
        n.debug("digest", &digest);
        let hint = presented.hint();
        n.both("hint", &hint);

        let peppers = Peppers::new(Pepper::new(KeyId(3), hex_key(&pepper)))
            .with_previous(Pepper::new(KeyId(2), hex_key(&previous)));
        n.debug("peppers", &peppers);
        for d in peppers.candidates(&presented) {
            n.debug("candidate digest", &d);
        }

        let r = record(kind, presented.spelling(), digest, hint.clone());
        n.debug("record", &r);
        n.debug("summary", &r.summary(datetime!(2026-03-01 10:00 UTC)));

        let events = [
            AuditEvent::new(r.created_at, Actor::System, AuditAction::Issued),
            AuditEvent::new(r.created_at, Actor::Client, AuditAction::Used),
            AuditEvent::new(
                r.created_at,
                Actor::Client,
                AuditAction::Refused {
                    reason: Rejection::Malformed,
                },
            ),
        ];
        for e in events {
            let e = e
                .token(r.id, kind, &hint)
                .ip(Some(IpAddr::V4(Ipv4Addr::LOCALHOST)))
                .generated_by(r.generated_by.clone())
                .device(&DeviceId::parse("SN-1").unwrap())
                .endpoint(&EndpointId::parse("/orders").unwrap(), Method::Get);
            n.debug("audit event", &e);
        }

        // Every error any parser gives for this token, intact or damaged.
        let mut inputs = damaged(text);
        inputs.push(text.to_owned());
        for input in &inputs {
            for k in Kind::ALL {
                if let Err(e) = format::parse(k, input) {
                    check_error(&n, "format error", e);
                }
            }
            if let Err(e) = format::parse_any(input) {
                check_error(&n, "format error (any)", e);
            }
            for (_, p) in format::scan(input) {
                n.debug("scanned", &p);
            }
            for e in [
                TokenId::parse(input).err(),
                Expiry::parse(input).err(),
                Hint::from_stored(input).err(),
                Pepper::from_hex(KeyId(9), input).err(),
                ApplicationName::parse(input.as_str()).err(),
                TokenName::parse(format!("{input}\u{7}")).err(),
            ]
            .into_iter()
            .flatten()
            {
                n.both("input error", &e);
            }
        }
    }
}

fn check_error(n: &Needles, what: &str, e: FormatError) {
    n.both(what, &e);
    n.both(what, &Error::from(e));
    n.both(what, &Rejection::from(e));
}

fn hex_key(p: &Pepper) -> [u8; 32] {
    let hex = p.expose_hex();
    let mut key = [0u8; 32];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    key
}

/// A pepper's key, pasted with a typo or cut short, is not echoed in the error either.
#[test]
fn pepper_errors_do_not_echo_the_key() {
    let p = Pepper::generate(KeyId(1)).unwrap();
    let hex = p.expose_hex();
    let mut n = Needles::new();
    n.add(&hex);
    n.add(&hex[..62]);
    for bad in [
        format!("{}zz", &hex[..62]),
        hex[..63].to_owned(),
        format!("{hex}0"),
        format!("0x{hex}"),
    ] {
        let e = Pepper::from_hex(KeyId(1), &bad).unwrap_err();
        n.both("pepper error", &e);
    }
    n.debug("pepper", &p);
    n.debug("peppers", &Peppers::new(p));
}
