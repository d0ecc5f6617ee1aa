//! Onboarding tokens: the enrollment page of an MDM console.
//!
//! An admin creates a single-use token for a kiosk, a three-use token bound to the first
//! device that redeems it (a leaked QR code enrolls nothing else), a short code to type on a
//! device without a camera, and one token per department in bulk. Devices redeem them, one is
//! refused, a token is revoked, and the list shows uses left and enrolled devices.
//!
//! Run it with `cargo run --example onboarding`.

use std::error::Error;
use std::sync::Arc;

use tessera::core::clock::{Clock, ManualClock};
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::id::DeviceId;
use tessera::core::kind::onboarding::{DeviceBinding, UsageLimit};
use tessera::core::lifecycle::State;
use tessera::memory::MemoryStore;
use tessera::onboarding::{Enrolled, NewOnboarding};
use tessera::{Principal, Rejection, TokenService};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

async fn run() -> Result<(), Box<dyn Error>> {
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-23 09:00 UTC)));
    let peppers = Peppers::new(Pepper::generate(KeyId(1))?);
    let service = TokenService::builder(MemoryStore::new(), peppers)
        .clock(clock.clone())
        .build();
    let admin = Principal::admin("mdm-admin")?;
    let tokens = service.onboarding();

    println!(
        "== {}: a single-use token for the lobby kiosk",
        when(clock.now())
    );
    let kiosk = tokens
        .create(NewOnboarding::new("kiosk-lockdown", "lobby")?, &admin)
        .await?;
    println!(
        "   QR code text (shown once): {}",
        kiosk.secret.expose_secret()
    );
    let first = tokens
        .redeem(
            kiosk.secret.expose_secret(),
            &DeviceId::parse("KIOSK-0001")?,
        )
        .await?;
    enrolled("KIOSK-0001 scans it", &first);
    assert_eq!(first.as_ref().map(|e| e.remaining), Ok(Some(0)));
    let again = tokens
        .redeem(
            kiosk.secret.expose_secret(),
            &DeviceId::parse("KIOSK-0002")?,
        )
        .await?;
    enrolled("KIOSK-0002 scans the same code", &again);
    assert_eq!(again, Err(Rejection::Exhausted));

    println!();
    println!("== three uses, bound to the first device (re-enrollment after a reset is fine)");
    let spec = NewOnboarding::new("field-tablet", "field-service")?
        .limit(UsageLimit::uses(3)?)
        .binding(DeviceBinding::FirstDevice(None))
        .expires_at(clock.now() + Duration::days(7));
    let bound = tokens.create(spec, &admin).await?;
    println!(
        "   QR code text (shown once): {}",
        bound.secret.expose_secret()
    );
    let r = tokens
        .redeem(
            bound.secret.expose_secret(),
            &DeviceId::parse("SN-TAB-7731")?,
        )
        .await?;
    enrolled("SN-TAB-7731 enrolls", &r);
    clock.advance(Duration::hours(3));
    let r = tokens
        .redeem(
            bound.secret.expose_secret(),
            &DeviceId::parse("SN-TAB-7731")?,
        )
        .await?;
    enrolled("SN-TAB-7731 enrolls again after a factory reset", &r);
    // One device, one use: the enrolled device gets its enrollment back and consumes nothing.
    assert_eq!(r.as_ref().map(|e| e.remaining), Ok(Some(2)));
    let r = tokens
        .redeem(
            bound.secret.expose_secret(),
            &DeviceId::parse("SN-PHONE-0042")?,
        )
        .await?;
    enrolled("SN-PHONE-0042 scans a photo of the leaked QR code", &r);
    assert_eq!(r, Err(Rejection::DeviceMismatch));

    println!();
    println!("== a short code for a device without a camera");
    let short = tokens
        .create(
            NewOnboarding::new("rugged-scanner", "warehouse")?.short_code(),
            &admin,
        )
        .await?;
    println!(
        "   code to read out (shown once): {}",
        short.secret.expose_secret()
    );
    let typed = short.secret.expose_secret().to_ascii_lowercase();
    let r = tokens
        .redeem(&typed, &DeviceId::parse("SCN-88-204")?)
        .await?;
    enrolled("SCN-88-204 has it typed in, in lower case", &r);
    assert!(r.is_ok());
    let mistyped = one_char_off(short.secret.expose_secret());
    let r = tokens
        .redeem(&mistyped, &DeviceId::parse("SCN-88-205")?)
        .await?;
    enrolled("SCN-88-205 has it typed with one character wrong", &r);
    assert_eq!(r, Err(Rejection::Malformed));

    println!();
    println!("== bulk: one token per department, 25 devices each, valid 14 days");
    let departments = ["sales", "engineering", "finance"];
    let mut specs = Vec::new();
    for group in departments {
        specs.push(
            NewOnboarding::new("corporate-standard", group)?
                .limit(UsageLimit::uses(25)?)
                .expires_at(clock.now() + Duration::days(14)),
        );
    }
    let batch = tokens.bulk(specs, &admin).await?;
    for (group, issued) in departments.iter().zip(&batch) {
        println!(
            "   {group:<12} (shown once): {}",
            issued.secret.expose_secret()
        );
    }
    let [sales, engineering, finance] = batch.as_slice() else {
        return Err("bulk issuance returned the wrong number of tokens".into());
    };
    for n in 1..=3 {
        let id = format!("LAPTOP-ENG-{n:03}");
        let r = tokens
            .redeem(engineering.secret.expose_secret(), &DeviceId::parse(&id)?)
            .await?;
        enrolled(&format!("{id} enrolls"), &r);
        assert_eq!(
            r.map(|e| e.group.to_string()),
            Ok(String::from("engineering"))
        );
    }

    println!();
    println!("== the sales token was pasted into a public chat: revoke it");
    let revoked = tokens.revoke(sales.token.id, &admin).await?;
    println!("   {} is now {}", revoked.hint, revoked.state);
    let r = tokens
        .redeem(
            sales.secret.expose_secret(),
            &DeviceId::parse("LAPTOP-SAL-001")?,
        )
        .await?;
    enrolled("LAPTOP-SAL-001 tries it", &r);
    assert_eq!(r, Err(Rejection::Revoked));

    println!();
    clock.advance(Duration::days(15));
    println!("== {}: the deployment window is over", when(clock.now()));
    let r = tokens
        .redeem(
            finance.secret.expose_secret(),
            &DeviceId::parse("LAPTOP-FIN-001")?,
        )
        .await?;
    enrolled("LAPTOP-FIN-001 tries the finance token", &r);
    assert_eq!(r, Err(Rejection::Expired));

    println!();
    println!("== Onboarding tokens");
    let list = tokens.list().await?;
    for l in &list {
        let uses = l.token.remaining.map_or_else(
            || format!("{} used, unlimited", l.token.uses),
            |left| format!("{} used, {left} left", l.token.uses),
        );
        let devices: Vec<&str> = l.devices.iter().map(|e| e.device.as_str()).collect();
        println!(
            "   {:<13} {:<14} {:<18} {:<9} {:<19} devices: {}",
            l.token.hint,
            l.data.group.as_str(),
            l.data.policy.as_str(),
            l.token.state.to_string(),
            uses,
            if devices.is_empty() {
                String::from("-")
            } else {
                devices.join(", ")
            }
        );
    }
    assert_eq!(list.len(), 6);
    let find = |id| {
        list.iter()
            .find(|l| l.token.id == id)
            .ok_or("token missing from the list")
    };
    assert_eq!(find(kiosk.token.id)?.token.state, State::Exhausted);
    assert_eq!(find(bound.token.id)?.token.remaining, Some(2));
    assert_eq!(find(bound.token.id)?.devices.len(), 1);
    assert_eq!(find(engineering.token.id)?.token.remaining, Some(22));
    assert_eq!(find(sales.token.id)?.token.state, State::Revoked);
    assert_eq!(find(finance.token.id)?.token.state, State::Expired);
    Ok(())
}

/// The code with its first character replaced, as a person might mistype it.
fn one_char_off(code: &str) -> String {
    let mut chars: Vec<char> = code.chars().collect();
    if let Some(c) = chars.first_mut() {
        *c = if *c == 'A' { 'B' } else { 'A' };
    }
    chars.into_iter().collect()
}

fn enrolled(what: &str, outcome: &Result<Enrolled, Rejection>) {
    match outcome {
        Ok(e) => println!(
            "   {what}: enrolled into group {} with policy {} ({} use(s) left)",
            e.group,
            e.policy,
            e.remaining
                .map_or_else(|| String::from("unlimited"), |n| n.to_string())
        ),
        Err(r) => println!(
            "   {what}: refused: {r} [{}]; the device is told {} (HTTP {})",
            r.code(),
            r.oauth(),
            r.oauth().status()
        ),
    }
}

fn when(t: OffsetDateTime) -> String {
    format!("{} {:02}:{:02}", t.date(), t.hour(), t.minute())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    run().await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn runs() {
        super::run().await.unwrap();
    }
}
