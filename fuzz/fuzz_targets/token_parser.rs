//! `format::parse` for every kind, `parse_any` and `scan` on any input: no panic, and every
//! accepted token keeps the parser's promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::digest::{KeyId, Pepper};
use tessera_core::format::{self, Spelling};
use tessera_core::{FormatError, Kind};

fuzz_target!(|data: &[u8]| {
    let pepper = Pepper::new(KeyId(1), [42; 32]);
    let text = String::from_utf8_lossy(data);
    let s: &str = &text;
    for kind in Kind::ALL {
        match format::parse(kind, s) {
            Ok(p) => {
                assert_eq!(p.kind(), kind);
                match p.spelling() {
                    Spelling::Prefixed => {
                        assert_eq!(p.canonical(), s.as_bytes());
                        assert!(s.starts_with(kind.prefix()));
                    }
                    Spelling::Plain64 => {
                        assert_eq!(kind, Kind::Endpoint);
                        assert_eq!(p.canonical(), s.as_bytes());
                    }
                    Spelling::ShortCode => {
                        assert_eq!(kind, Kind::Onboarding);
                        assert_eq!(p.canonical().len(), 28);
                        assert!(
                            p.canonical()
                                .iter()
                                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                        );
                    }
                }
                let _ = p.hint();
                let _ = pepper.digest(&p);
            }
            Err(FormatError::TooLong { len, max }) => assert!(len > max && len == s.len()),
            Err(FormatError::Charset { at }) => assert!(at <= s.len()),
            Err(_) => {}
        }
    }
    if let Ok(p) = format::parse_any(s) {
        assert_eq!(p.canonical(), s.as_bytes());
        assert!(format::parse(p.kind(), s).is_ok());
    }
    let mut last_end = 0;
    for (at, p) in format::scan(s) {
        let end = at + p.canonical().len();
        assert!(at >= last_end, "scan results overlap");
        assert_eq!(&s.as_bytes()[at..end], p.canonical());
        assert!(format::parse_any(&s[at..end]).is_ok());
        last_end = end;
    }
});
