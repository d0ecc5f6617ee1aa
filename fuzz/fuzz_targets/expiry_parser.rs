//! `Expiry::parse` on any input: no panic; what it accepts prints back to itself and resolves
//! without overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::kind::auth::Expiry;
use time::macros::datetime;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(e) = Expiry::parse(&text) {
        let printed = e.to_string();
        assert_eq!(Expiry::parse(&printed).ok(), Some(e), "{printed}");
        let _ = e.resolve(datetime!(2026-01-01 0:00 UTC));
    }
});
