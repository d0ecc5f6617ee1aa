//! Valid records of every kind, digested under a fixed pepper from freshly generated secrets,
//! and the fixed instants cases use instead of a clock.

use std::net::IpAddr;

use libtest_mimic::Failed;
use tessera_core::audit::{Actor, AuditAction, AuditEvent};
use tessera_core::digest::{Digest, Hint, KeyId, Pepper};
use tessera_core::format::{self, Entropy, Spelling};
use tessera_core::id::{
    AccessType, ApplicationName, Description, DeviceGroup, DeviceId, EndpointId, Permission,
    PolicyId, TokenId, TokenName, UserId,
};
use tessera_core::kind::application::AccessTypes;
use tessera_core::kind::auth::Scope;
use tessera_core::kind::endpoint::{Mapping, Method};
use tessera_core::kind::onboarding::{DeviceBinding, UsageLimit};
use tessera_core::kind::{
    ApplicationData, AuthData, DeploymentData, EndpointData, KindData, OnboardingData,
};
use tessera_core::lifecycle::State;
use tessera_core::record::TokenRecord;
use tessera_core::{Kind, Secret};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// The instant every case starts from (whole milliseconds).
pub(super) const T0: OffsetDateTime = datetime!(2026-03-01 12:00:00.250 UTC);

/// `T0` plus `secs` seconds.
pub(super) fn at(secs: i64) -> OffsetDateTime {
    T0 + Duration::seconds(secs)
}

/// The pepper every fixture is digested under.
fn pepper() -> Pepper {
    Pepper::new(KeyId(1), [0x5a; 32])
}

/// A fresh secret for `r`, sealed under the fixtures' pepper.
pub(super) fn fresh_seal(r: &TokenRecord) -> Result<tessera_core::seal::Sealed, Failed> {
    Ok(pepper().seal(r.id, &Secret::generate(r.kind())?)?)
}

/// A fresh digest and hint for a token of `kind` spelled `spelling`.
pub(super) fn digest_spelled(kind: Kind, spelling: Spelling) -> Result<(Digest, Hint), Failed> {
    let secret = Secret::generate_with(kind, spelling, Entropy::DEFAULT)?;
    let presented = format::parse(kind, secret.expose_secret())?;
    Ok((pepper().digest(&presented), presented.hint()))
}

/// A fresh digest and hint for a prefixed token of `kind`.
pub(super) fn digest(kind: Kind) -> Result<(Digest, Hint), Failed> {
    digest_spelled(kind, Spelling::Prefixed)
}

/// An active record of `data`'s kind issued at `T0` by the system: no expiry, never used,
/// unlimited uses (onboarding: single use), freshly generated id and digest.
pub(super) fn record(data: KindData) -> Result<TokenRecord, Failed> {
    let kind = data.kind();
    let (digest, hint) = digest(kind)?;
    Ok(TokenRecord {
        id: TokenId::generate()?,
        digest,
        spelling: Spelling::Prefixed,
        hint,
        sealed: None,
        state: State::Active,
        created_at: T0,
        created_by: Actor::System,
        generated_by: None,
        expires_at: None,
        last_used_at: None,
        activated_at: T0,
        grace_until: None,
        successor: None,
        limit: if kind == Kind::Onboarding {
            UsageLimit::SINGLE
        } else {
            UsageLimit::Unlimited
        },
        uses: 0,
        data,
    })
}

/// A record of `data` with every optional field set and every field away from its default.
pub(super) fn full_record(data: KindData) -> Result<TokenRecord, Failed> {
    let mut r = record(data)?;
    r.created_at = at(-86_400);
    r.created_by = Actor::User(user("admin-1")?);
    r.generated_by = Some(user("admin-2")?);
    r.expires_at = Some(at(86_400 * 30));
    r.last_used_at = Some(at(-60));
    r.activated_at = at(-3_600);
    r.grace_until = Some(at(600));
    r.successor = Some(TokenId::generate()?);
    r.limit = UsageLimit::uses(1_000_000_000_000)?;
    r.uses = 999_999_999_999;
    r.state = State::Superseded;
    r.sealed = Some(pepper().seal(r.id, &Secret::generate(r.kind())?)?);
    Ok(r)
}

/// One record of each kind and role, with every optional field set: deployment, onboarding
/// (each binding), endpoint primary and secondary, auth and application.
pub(super) fn every_kind() -> Result<Vec<TokenRecord>, Failed> {
    let mut out = vec![
        full_record(deployment("installer-eu")?)?,
        full_record(onboarding(DeviceBinding::Any)?)?,
        full_record(onboarding(DeviceBinding::Device(device("SN-0001")?))?)?,
        full_record(onboarding(DeviceBinding::FirstDevice(None))?)?,
        full_record(onboarding(DeviceBinding::FirstDevice(Some(device(
            "SN-0002",
        )?)))?)?,
        full_record(primary("/api/hooks/build", Method::Delete)?)?,
        full_record(secondary("ci-runner", false)?)?,
        full_record(auth(
            "tech-7",
            "nightly export",
            &["reset_password", "unlock"],
        )?)?,
        full_record(application("siem-feed-01")?)?,
    ];
    // Spellings other than the default, where the kind has them.
    let (d, h) = digest_spelled(Kind::Onboarding, Spelling::ShortCode)?;
    let mut short = full_record(onboarding(DeviceBinding::Any)?)?;
    (short.digest, short.hint, short.spelling) = (d, h, Spelling::ShortCode);
    out.push(short);
    let (d, h) = digest_spelled(Kind::Endpoint, Spelling::Plain64)?;
    let mut plain = full_record(secondary("plain-secondary", true)?)?;
    (plain.digest, plain.hint, plain.spelling) = (d, h, Spelling::Plain64);
    out.push(plain);
    Ok(out)
}

/// An onboarding record with this limit, active and unexpired, any device.
pub(super) fn onboarding_record(limit: UsageLimit) -> Result<TokenRecord, Failed> {
    let mut r = record(onboarding(DeviceBinding::Any)?)?;
    r.limit = limit;
    r.expires_at = Some(at(86_400));
    Ok(r)
}

/// A name.
pub(super) fn name(s: &str) -> Result<TokenName, Failed> {
    Ok(TokenName::parse(s)?)
}

/// A user.
pub(super) fn user(s: &str) -> Result<UserId, Failed> {
    Ok(UserId::parse(s)?)
}

/// A device.
pub(super) fn device(s: &str) -> Result<DeviceId, Failed> {
    Ok(DeviceId::parse(s)?)
}

/// An endpoint.
pub(super) fn endpoint(s: &str) -> Result<EndpointId, Failed> {
    Ok(EndpointId::parse(s)?)
}

/// An address.
pub(super) fn ip(s: &str) -> Result<IpAddr, Failed> {
    s.parse()
        .map_err(|e| Failed::from(format!("bad fixture address {s}: {e}")))
}

/// Deployment data.
pub(super) fn deployment(n: &str) -> Result<KindData, Failed> {
    Ok(KindData::Deployment(DeploymentData {
        name: name(n)?,
        auto_renew: true,
    }))
}

/// Onboarding data with this binding.
pub(super) fn onboarding(binding: DeviceBinding) -> Result<KindData, Failed> {
    Ok(KindData::Onboarding(OnboardingData {
        policy: PolicyId::parse("kiosk-policy")?,
        group: DeviceGroup::parse("Warehouse / Floor 2")?,
        binding,
    }))
}

/// An endpoint primary.
pub(super) fn primary(e: &str, method: Method) -> Result<KindData, Failed> {
    Ok(KindData::Endpoint(EndpointData::Primary {
        endpoint: endpoint(e)?,
        method,
    }))
}

/// An endpoint secondary.
pub(super) fn secondary(n: &str, enabled: bool) -> Result<KindData, Failed> {
    Ok(KindData::Endpoint(EndpointData::Secondary {
        name: name(n)?,
        description: Description::parse("posts build results\nfrom the CI farm")?,
        enabled,
    }))
}

/// Auth data.
pub(super) fn auth(owner: &str, n: &str, perms: &[&str]) -> Result<KindData, Failed> {
    let perms = perms
        .iter()
        .map(|p| Permission::parse(*p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(KindData::Auth(AuthData {
        owner: user(owner)?,
        name: name(n)?,
        scope: Scope::new(perms)?,
    }))
}

/// Application data.
pub(super) fn application(n: &str) -> Result<KindData, Failed> {
    Ok(KindData::Application(ApplicationData {
        name: ApplicationName::parse(n)?,
        description: Description::parse("threat feed for the SIEM")?,
        access: AccessTypes::new([
            AccessType::parse("security-director")?,
            AccessType::parse("third-party-feeds")?,
        ])?,
    }))
}

/// A mapping.
pub(super) fn mapping(
    secondary: TokenId,
    e: &str,
    method: Method,
    enabled: bool,
) -> Result<Mapping, Failed> {
    Ok(Mapping {
        secondary,
        endpoint: endpoint(e)?,
        method,
        enabled,
    })
}

/// An event at `at` by the system.
pub(super) fn event(at: OffsetDateTime, action: AuditAction) -> AuditEvent {
    AuditEvent::new(at, Actor::System, action)
}
