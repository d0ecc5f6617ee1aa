//! Properties of the token formats: round trips, a parser that never panics, a checksum that
//! catches every single substitution and every adjacent transposition, error precedence and the
//! scanner.

use proptest::prelude::*;

use super::*;

/// Every character a token may hold as far as the envelope check goes: `[A-Za-z0-9_-]`.
const CHARSET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// The entropies the issue asks for.
const ENTROPIES: [u32; 3] = [128, 256, 512];

/// Every (kind, spelling) pair that can be generated and parsed back.
fn allowed() -> Vec<(Kind, Spelling)> {
    let mut v: Vec<_> = Kind::ALL.iter().map(|k| (*k, Spelling::Prefixed)).collect();
    v.push((Kind::Endpoint, Spelling::Plain64));
    v.push((Kind::Onboarding, Spelling::ShortCode));
    v
}

fn generate(kind: Kind, spelling: Spelling, bits: u32) -> Secret {
    Secret::generate_with(kind, spelling, Entropy::bits(bits).unwrap()).unwrap()
}

/// What a short code's canonical bytes must be: upper case, no dashes.
fn short_canonical(text: &str) -> Vec<u8> {
    text.bytes()
        .filter(|b| *b != b'-')
        .map(|b| b.to_ascii_uppercase())
        .collect()
}

fn with_byte(s: &str, at: usize, b: u8) -> String {
    let mut v = s.as_bytes().to_vec();
    v[at] = b;
    String::from_utf8(v).unwrap()
}

fn swapped(s: &str, at: usize) -> String {
    let mut v = s.as_bytes().to_vec();
    v.swap(at, at + 1);
    String::from_utf8(v).unwrap()
}

/// Check a generated token parses back to itself, with every structural promise of its spelling.
fn assert_round_trip(kind: Kind, spelling: Spelling, bits: u32, text: &str) {
    let p = parse(kind, text).unwrap_or_else(|e| panic!("{kind}/{spelling:?}/{bits}: {e}"));
    assert_eq!(p.kind(), kind);
    assert_eq!(p.spelling(), spelling);
    match spelling {
        Spelling::Prefixed => {
            let body = Entropy::bits(bits).unwrap().body_len();
            assert_eq!(text.len(), PREFIX_LEN + body + CHECKSUM_LEN);
            assert!(text.starts_with(kind.prefix()));
            assert_eq!(p.canonical(), text.as_bytes());
            let b = text.as_bytes();
            assert!(
                b[PREFIX_LEN + body - 1].is_ascii_alphabetic(),
                "body ends in a letter"
            );
            assert!(
                (b'0'..=b'4').contains(&b[PREFIX_LEN + body]),
                "checksum starts 0..4"
            );
            let any = parse_any(text).unwrap();
            assert_eq!(any.kind(), kind);
            assert_eq!(any.canonical(), text.as_bytes());
            for other in Kind::ALL.into_iter().filter(|o| *o != kind) {
                assert_eq!(
                    parse(other, text).unwrap_err(),
                    FormatError::WrongKind {
                        expected: other,
                        found: kind
                    }
                );
            }
            assert!(p.hint().as_str().starts_with(kind.prefix()));
        }
        Spelling::Plain64 => {
            assert_eq!(text.len(), PLAIN_LEN);
            assert!(text.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert_eq!(p.canonical(), text.as_bytes());
            assert_eq!(parse_any(text).unwrap_err(), FormatError::UnknownPrefix);
        }
        Spelling::ShortCode => {
            assert_eq!(text.len(), SHORT_LEN + SHORT_LEN / 4 - 1);
            for (i, b) in text.bytes().enumerate() {
                if i % 5 == 4 {
                    assert_eq!(b, b'-', "groups of four in {text}");
                } else {
                    assert!(CROCKFORD.contains(&b));
                }
            }
            assert_eq!(p.canonical(), short_canonical(text).as_slice());
            assert_eq!(parse_any(text).unwrap_err(), FormatError::UnknownPrefix);
        }
    }
    // No other kind takes a plain token or a short code.
    if spelling != Spelling::Prefixed {
        for other in Kind::ALL.into_iter().filter(|o| *o != kind) {
            assert!(parse(other, text).is_err(), "{other} took a {spelling:?}");
        }
    }
}

#[test]
fn every_kind_spelling_and_entropy_round_trips() {
    for (kind, spelling) in allowed() {
        for bits in ENTROPIES {
            for _ in 0..8 {
                let s = generate(kind, spelling, bits);
                assert_round_trip(kind, spelling, bits, s.expose_secret());
            }
        }
    }
}

#[test]
fn body_lengths_match_the_module_doc() {
    assert_eq!(Entropy::DEFAULT.body_len(), 44);
    assert_eq!(MIN_BODY, 23);
    assert_eq!(MAX_BODY, 87);
    assert_eq!(
        Secret::generate(Kind::Auth).unwrap().expose_secret().len(),
        58
    );
    assert!(Entropy::bits(127).is_err());
    assert!(Entropy::bits(513).is_err());
    assert_eq!(Entropy::bits(128).unwrap(), Entropy::MIN);
    assert_eq!(Entropy::bits(512).unwrap(), Entropy::MAX);
    assert_eq!(Entropy::default(), Entropy::DEFAULT);
}

/// The body's character distribution is uniform enough that the alphabet is fully used (a
/// modulo-bias or off-by-one in `random_chars` would starve some characters).
#[test]
fn generation_uses_the_whole_alphabet() {
    let mut seen = [false; 256];
    for _ in 0..64 {
        let s = generate(Kind::Deployment, Spelling::Prefixed, 512);
        for b in s.expose_secret().bytes().skip(PREFIX_LEN) {
            seen[usize::from(b)] = true;
        }
    }
    assert!(BASE62.iter().all(|b| seen[usize::from(*b)]));
    let mut seen = [false; 256];
    for _ in 0..64 {
        let s = generate(Kind::Onboarding, Spelling::ShortCode, 256);
        for b in s.expose_secret().bytes() {
            seen[usize::from(b)] = true;
        }
    }
    assert!(CROCKFORD.iter().all(|b| seen[usize::from(*b)]));
}

fn kind_spelling() -> impl Strategy<Value = (Kind, Spelling)> {
    proptest::sample::select(allowed())
}

/// Strings that look like tokens: a real or near-miss prefix and a body from the envelope charset.
fn token_like() -> impl Strategy<Value = String> {
    (
        proptest::option::of(proptest::sample::select(vec![
            "tsr_dep_", "tsr_onb_", "tsr_ept_", "tsr_aut_", "tsr_app_", "tsr_xyz_", "tsr_", "tsr",
        ])),
        "[A-Za-z0-9_-]{0,120}",
    )
        .prop_map(|(p, body)| format!("{}{body}", p.unwrap_or_default()))
}

/// Everything the three entry points promise for any input, and no panic.
fn check_any_input(s: &str) {
    for kind in Kind::ALL {
        if let Ok(p) = parse(kind, s) {
            assert_eq!(p.kind(), kind);
            match p.spelling() {
                Spelling::Prefixed | Spelling::Plain64 => assert_eq!(p.canonical(), s.as_bytes()),
                Spelling::ShortCode => assert_eq!(p.canonical().len(), SHORT_LEN),
            }
            let _ = p.hint();
        }
    }
    if let Ok(p) = parse_any(s) {
        assert_eq!(p.canonical(), s.as_bytes());
        assert_eq!(parse(p.kind(), s).unwrap().kind(), p.kind());
    }
    for (at, p) in scan(s) {
        let len = p.canonical().len();
        assert_eq!(&s.as_bytes()[at..at + len], p.canonical());
        assert!(parse_any(&s[at..at + len]).is_ok());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any generated token parses back to its kind and spelling, with canonical bytes equal to
    /// the token (a short code: upper case without dashes); any entropy in 128..=512 works.
    #[test]
    fn generated_tokens_round_trip((kind, spelling) in kind_spelling(), bits in 128u32..=512) {
        let s = generate(kind, spelling, bits);
        assert_round_trip(kind, spelling, bits, s.expose_secret());
    }

    /// Arbitrary unicode never panics the parser or the scanner.
    #[test]
    fn arbitrary_unicode_never_panics(s in ".{0,700}") {
        check_any_input(&s);
    }

    /// Arbitrary bytes (made text the lossy way) never panic the parser or the scanner.
    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..700)) {
        check_any_input(&String::from_utf8_lossy(&b));
    }

    /// Near-misses that reach the deeper checks never panic, and are refused unless real.
    #[test]
    fn token_like_input_never_panics(s in token_like()) {
        check_any_input(&s);
    }

    /// A short code is accepted exactly when its weighted digit sum is zero modulo 1021, checked
    /// against an independent computation.
    #[test]
    fn short_codes_accepted_iff_check_holds(digits in proptest::collection::vec(0u8..32, SHORT_LEN)) {
        let text: String = digits.iter().map(|d| char::from(CROCKFORD[usize::from(*d)])).collect();
        let weights = (2u32..28).chain([32, 1]);
        let sum: u32 = digits.iter().zip(weights).map(|(d, w)| u32::from(*d) * w).sum();
        let r = parse(Kind::Onboarding, &text);
        if sum % 1021 == 0 {
            let p = r.unwrap();
            prop_assert_eq!(p.canonical(), text.as_bytes());
        } else {
            prop_assert_eq!(r.unwrap_err(), FormatError::Checksum);
        }
    }

    /// Tokens hidden in noise are found at their offsets, and look-alikes with a bad checksum
    /// are not.
    #[test]
    fn scan_finds_exactly_the_real_tokens(
        parts in proptest::collection::vec(
            (0u8..4, proptest::sample::select(Kind::ALL.to_vec()), 0usize..200, "[a-z0-9 ]{0,12}"),
            0..8,
        ),
        seps in proptest::collection::vec(
            proptest::sample::select(vec![" ", "\n", "\"", "'", "=", ": ", "(", ")", "/", ", ", "é", "-", "\t"]),
            8,
        ),
    ) {
        let mut text = String::new();
        let mut expected = Vec::new();
        let mut secrets = Vec::new();
        for (i, (what, kind, pick, noise)) in parts.into_iter().enumerate() {
            text.push_str(seps[i]);
            match what {
                0 => text.push_str(&noise),
                1 => text.push_str(&format!("{}{noise}", kind.prefix())),
                _ => {
                    let s = generate(kind, Spelling::Prefixed, ENTROPIES[pick % 3]);
                    let t = s.expose_secret();
                    if what == 2 {
                        expected.push((text.len(), kind, t.to_owned()));
                        text.push_str(t);
                    } else {
                        // A look-alike: one body or checksum character replaced by another
                        // base62 character.
                        let at = PREFIX_LEN + pick % (t.len() - PREFIX_LEN);
                        let old = t.as_bytes()[at];
                        let new = BASE62[(BASE62.iter().position(|b| *b == old).unwrap() + 1 + pick % 61) % 62];
                        text.push_str(&with_byte(t, at, new));
                    }
                    secrets.push(s);
                }
            }
            text.push_str(seps[(i + 1) % 8]);
        }
        let found: Vec<_> = scan(&text)
            .into_iter()
            .map(|(at, p)| (at, p.kind(), String::from_utf8(p.canonical().to_vec()).unwrap()))
            .collect();
        prop_assert_eq!(found, expected);
    }
}

/// Every position times every other character of `[A-Za-z0-9_-]`, and every adjacent swap of
/// differing characters, for prefixed tokens of every kind and entropy: all refused, with the
/// error the check order promises.
#[test]
fn prefixed_checksum_catches_every_substitution_and_transposition() {
    for kind in Kind::ALL {
        for bits in ENTROPIES {
            for _ in 0..3 {
                let s = generate(kind, Spelling::Prefixed, bits);
                let t = s.expose_secret();
                let body_end = t.len() - CHECKSUM_LEN;
                for at in 0..t.len() {
                    let old = t.as_bytes()[at];
                    for &c in CHARSET.iter().filter(|c| **c != old) {
                        let m = with_byte(t, at, c);
                        let want = if at < PREFIX_LEN {
                            FormatError::UnknownPrefix
                        } else if c == b'_' || c == b'-' {
                            FormatError::Charset { at }
                        } else {
                            FormatError::Checksum
                        };
                        assert_eq!(parse(kind, &m).unwrap_err(), want, "{at} {}", char::from(c));
                        assert_eq!(parse_any(&m).unwrap_err(), want);
                        assert!(scan(&m).is_empty());
                    }
                }
                for at in 0..t.len() - 1 {
                    let b = t.as_bytes();
                    if b[at] == b[at + 1] {
                        continue;
                    }
                    let m = swapped(t, at);
                    let want = if at < PREFIX_LEN {
                        FormatError::UnknownPrefix
                    } else {
                        FormatError::Checksum
                    };
                    assert_eq!(
                        parse(kind, &m).unwrap_err(),
                        want,
                        "swap at {at}, body ends {body_end}"
                    );
                    assert_eq!(parse_any(&m).unwrap_err(), want);
                    assert!(scan(&m).is_empty());
                }
            }
        }
    }
}

/// What a substitution of `c` for the character of a dashed short code at `at` must yield.
fn short_substitution_outcome(old: u8, c: u8, at: usize) -> Result<(), FormatError> {
    match (old, c) {
        (_, b'_') => Err(FormatError::UnknownPrefix),
        // A dash replaced by a digit: one digit too many.
        (b'-', c) if crockford_value(c).is_some() => Err(FormatError::BodyLength {
            len: SHORT_LEN + 1,
            min: SHORT_LEN,
            max: SHORT_LEN,
        }),
        // A digit replaced by a dash: one digit too few.
        (_, b'-') => Err(FormatError::BodyLength {
            len: SHORT_LEN - 1,
            min: SHORT_LEN,
            max: SHORT_LEN,
        }),
        (_, c) if crockford_value(c).is_none() => Err(FormatError::Charset { at }),
        // Lower case and the I/L/O aliases read as the same digit.
        (old, c) if crockford_value(old) == crockford_value(c) => Ok(()),
        _ => Err(FormatError::Checksum),
    }
}

/// The short code's mod-1021 check: every substitution by any character of `[A-Za-z0-9_-]` is
/// refused unless it reads as the same digit (case, `I`/`L` for `1`, `O` for `0`), and every
/// adjacent swap of differing digits is refused; a digit swapped with a dash is the same code.
#[test]
fn short_code_check_catches_every_substitution_and_transposition() {
    let mut aliases_seen = 0;
    for _ in 0..24 {
        let s = generate(Kind::Onboarding, Spelling::ShortCode, 256);
        let dashed = s.expose_secret();
        let canonical = short_canonical(dashed);
        let compact = String::from_utf8(canonical.clone()).unwrap();
        let lower = dashed.to_ascii_lowercase();
        for text in [dashed, compact.as_str(), lower.as_str()] {
            assert_eq!(
                parse(Kind::Onboarding, text).unwrap().canonical(),
                canonical.as_slice()
            );
            for at in 0..text.len() {
                let old = text.as_bytes()[at];
                for &c in CHARSET.iter().filter(|c| **c != old) {
                    let m = with_byte(text, at, c);
                    match (
                        short_substitution_outcome(old, c, at),
                        parse(Kind::Onboarding, &m),
                    ) {
                        (Ok(()), Ok(p)) => {
                            aliases_seen += 1;
                            assert_eq!(p.canonical(), canonical.as_slice(), "{m}");
                        }
                        (Err(want), Err(got)) => assert_eq!(got, want, "{m}"),
                        (want, got) => panic!(
                            "{m}: wanted {want:?}, got {:?}",
                            got.map(|p| p.canonical().to_vec())
                        ),
                    }
                }
            }
            for at in 0..text.len() - 1 {
                let b = text.as_bytes();
                if b[at] == b[at + 1] {
                    continue;
                }
                let m = swapped(text, at);
                let r = parse(Kind::Onboarding, &m);
                if b[at] == b'-' || b[at + 1] == b'-' {
                    assert_eq!(r.unwrap().canonical(), canonical.as_slice(), "{m}");
                } else {
                    assert_eq!(r.unwrap_err(), FormatError::Checksum, "{m}");
                }
            }
        }
    }
    // Most digits are letters, whose other case is an alias; 0 and 1 have three or four.
    assert!(aliases_seen >= 24 * 28);
}

#[test]
fn short_codes_read_the_crockford_way() {
    let s = generate(Kind::Onboarding, Spelling::ShortCode, 256);
    let t = s.expose_secret();
    let canonical = short_canonical(t);
    let aliased: String = t
        .chars()
        .filter(|c| *c != '-')
        .enumerate()
        .map(|(i, c)| match c {
            '1' if i % 2 == 0 => 'I',
            '1' => 'l',
            '0' if i % 2 == 0 => 'O',
            '0' => 'o',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    // Dashes anywhere, any number.
    let spaced = format!("-{}--{}-", &aliased[..3], &aliased[3..]);
    for text in [aliased.as_str(), spaced.as_str()] {
        let p = parse(Kind::Onboarding, text).unwrap();
        assert_eq!(p.spelling(), Spelling::ShortCode);
        assert_eq!(p.canonical(), canonical.as_slice());
    }
    assert_eq!(crockford_value(b'I'), Some(1));
    assert_eq!(crockford_value(b'l'), Some(1));
    assert_eq!(crockford_value(b'o'), Some(0));
    assert_eq!(crockford_value(b'U'), None);
    // Distinct values for the 32 canonical digits, and weights distinct, non-zero, below 1021.
    for (i, c) in CROCKFORD.iter().enumerate() {
        assert_eq!(crockford_value(*c).map(usize::from), Some(i));
    }
    let weights: std::collections::BTreeSet<u32> = (0..SHORT_LEN).map(short_weight).collect();
    assert_eq!(weights.len(), SHORT_LEN);
    assert!(weights.iter().all(|w| (1..SHORT_PRIME).contains(w)));
}

#[test]
fn short_code_lengths_and_charset() {
    let too_long = short_len_error(SHORT_LEN + 1);
    assert_eq!(
        parse(Kind::Onboarding, &"0".repeat(SHORT_LEN))
            .unwrap()
            .canonical(),
        [b'0'; SHORT_LEN]
    );
    assert_eq!(
        parse(Kind::Onboarding, &"0".repeat(SHORT_LEN + 1)).unwrap_err(),
        too_long
    );
    assert_eq!(
        parse(Kind::Onboarding, &"0".repeat(300)).unwrap_err(),
        short_len_error(300)
    );
    assert_eq!(
        parse(Kind::Onboarding, "0000-").unwrap_err(),
        short_len_error(4)
    );
    assert_eq!(
        parse(Kind::Onboarding, "----").unwrap_err(),
        short_len_error(0)
    );
    assert_eq!(
        parse(Kind::Onboarding, "00U0").unwrap_err(),
        FormatError::Charset { at: 2 }
    );
    // A short code is an onboarding spelling only.
    for kind in [
        Kind::Deployment,
        Kind::Endpoint,
        Kind::Auth,
        Kind::Application,
    ] {
        assert_eq!(
            parse(kind, &"0".repeat(SHORT_LEN)).unwrap_err(),
            FormatError::UnknownPrefix
        );
    }
}

/// The length error of a short code with `len` digits.
const fn short_len_error(len: usize) -> FormatError {
    FormatError::BodyLength {
        len,
        min: SHORT_LEN,
        max: SHORT_LEN,
    }
}

/// The length cap comes before anything else: 600 bytes of anything is `TooLong`.
#[test]
fn length_cap_is_checked_first() {
    let long = [
        "x".repeat(600),
        " ".repeat(600),
        "\"".repeat(600),
        "é".repeat(300),
        format!("tsr_onb_{}", "!".repeat(592)),
        "0".repeat(600),
    ];
    for s in &long {
        assert_eq!(s.len(), 600);
        let want = FormatError::TooLong {
            len: 600,
            max: MAX_TOKEN_LEN,
        };
        for kind in Kind::ALL {
            assert_eq!(parse(kind, s).unwrap_err(), want);
        }
        assert_eq!(parse_any(s).unwrap_err(), want);
        assert!(scan(s).is_empty());
    }
    // Exactly at the cap, the next check decides.
    let at_cap = format!("tsr_dep_{}", "a".repeat(MAX_TOKEN_LEN - 8));
    assert!(matches!(
        parse(Kind::Deployment, &at_cap),
        Err(FormatError::BodyLength { .. })
    ));
    let over = format!("{at_cap}a");
    assert_eq!(
        parse(Kind::Deployment, &over).unwrap_err(),
        FormatError::TooLong {
            len: MAX_TOKEN_LEN + 1,
            max: MAX_TOKEN_LEN
        }
    );
    for kind in Kind::ALL {
        assert_eq!(parse(kind, "").unwrap_err(), FormatError::Empty);
    }
    assert_eq!(parse_any("").unwrap_err(), FormatError::Empty);
}

#[test]
fn charset_errors_name_the_first_offending_byte() {
    let s = Secret::generate(Kind::Application).unwrap();
    let t = s.expose_secret();
    let cases = [
        (format!(" {t}"), 0),
        (format!("\"{t}\""), 0),
        (format!("'{t}'"), 0),
        (format!("{t}\n"), t.len()),
        (format!("{t} "), t.len()),
        (format!("{} {}", &t[..20], &t[20..]), 20),
        (format!("{}é", &t[..10]), 10),
        (format!("Bearer {t}"), 6),
    ];
    for (m, at) in &cases {
        for kind in Kind::ALL {
            assert_eq!(
                parse(kind, m).unwrap_err(),
                FormatError::Charset { at: *at },
                "{m:?}"
            );
        }
        assert_eq!(parse_any(m).unwrap_err(), FormatError::Charset { at: *at });
    }
    // A dash or underscore passes the envelope but not the body.
    let m = with_byte(t, 30, b'-');
    assert_eq!(
        parse(Kind::Application, &m).unwrap_err(),
        FormatError::Charset { at: 30 }
    );
}

#[test]
fn prefixes_and_kinds() {
    let s = Secret::generate(Kind::Deployment).unwrap();
    let t = s.expose_secret();
    assert_eq!(
        parse(Kind::Auth, t).unwrap_err(),
        FormatError::WrongKind {
            expected: Kind::Auth,
            found: Kind::Deployment
        }
    );
    let unknown = format!("tsr_xyz_{}", &t[8..]);
    for kind in Kind::ALL {
        assert_eq!(
            parse(kind, &unknown).unwrap_err(),
            FormatError::UnknownPrefix
        );
        assert_eq!(
            parse(kind, "ghp_0123456789abcdef").unwrap_err(),
            FormatError::UnknownPrefix
        );
        assert_eq!(parse(kind, "tsr_").unwrap_err(), FormatError::UnknownPrefix);
    }
    assert_eq!(parse_any(&unknown).unwrap_err(), FormatError::UnknownPrefix);
    assert_eq!(
        parse_any("TSR_DEP_abc").unwrap_err(),
        FormatError::UnknownPrefix
    );
    assert_eq!(
        parse_any("tsr_dep_abc").unwrap_err(),
        FormatError::BodyLength {
            len: 0,
            min: MIN_BODY,
            max: MAX_BODY
        }
    );
    // Truncated and extended copies are length errors, not checksum errors.
    let short = &t[..PREFIX_LEN + MIN_BODY + CHECKSUM_LEN - 1];
    assert!(matches!(
        parse(Kind::Deployment, short),
        Err(FormatError::BodyLength { .. })
    ));
    let long = format!("tsr_dep_{}", "a".repeat(MAX_BODY + CHECKSUM_LEN + 1));
    assert_eq!(
        parse(Kind::Deployment, &long).unwrap_err(),
        FormatError::BodyLength {
            len: MAX_BODY + 1,
            min: MIN_BODY,
            max: MAX_BODY
        }
    );
    for kind in Kind::ALL {
        assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        assert_eq!(kind.to_string(), kind.as_str());
        assert_eq!(Kind::from_prefix(kind.prefix().as_bytes()), Some(kind));
    }
    assert_eq!(Kind::parse("Auth"), None);
}

#[test]
fn plain_tokens_are_endpoint_only_and_exactly_64() {
    let s = generate(Kind::Endpoint, Spelling::Plain64, 256);
    let t = s.expose_secret();
    assert_eq!(
        parse(Kind::Endpoint, &t[..63]).unwrap_err(),
        FormatError::UnknownPrefix
    );
    assert_eq!(
        parse(Kind::Endpoint, &format!("{t}A")).unwrap_err(),
        FormatError::UnknownPrefix
    );
    for kind in [Kind::Deployment, Kind::Auth, Kind::Application] {
        assert_eq!(parse(kind, t).unwrap_err(), FormatError::UnknownPrefix);
    }
    // Onboarding reads it as a (far too long) short code.
    assert!(parse(Kind::Onboarding, t).is_err());
}

#[test]
fn scan_reports_offsets_and_skips_look_alikes() {
    let a = Secret::generate(Kind::Onboarding).unwrap();
    let b = generate(Kind::Auth, Spelling::Prefixed, 512);
    let c = generate(Kind::Endpoint, Spelling::Prefixed, 128);
    let (a, b, c) = (a.expose_secret(), b.expose_secret(), c.expose_secret());
    let typo = with_byte(a, 20, if a.as_bytes()[20] == b'x' { b'y' } else { b'x' });
    let text = format!(
        "é config: token={a}\nAuthorization: Bearer {typo}\n\"{b}\", x{c} y-{c}. tsr_app_short tsr_"
    );
    let found: Vec<_> = scan(&text)
        .into_iter()
        .map(|(at, p)| (at, p.kind()))
        .collect();
    let at_a = text.find(a).unwrap();
    let at_b = text.find(b).unwrap();
    let at_c1 = text.find(c).unwrap();
    let at_c = text.rfind(c).unwrap();
    assert_eq!(
        found,
        [
            (at_a, Kind::Onboarding),
            (at_b, Kind::Auth),
            (at_c1, Kind::Endpoint),
            (at_c, Kind::Endpoint)
        ]
    );
    // A token run into more alphanumerics is a different string, not a token...
    assert!(scan(&format!("{a}0")).is_empty());
    // ...but one after any byte is found.
    assert_eq!(scan(&format!("_{a}"))[0].0, 1);
    assert_eq!(scan(&format!("{a}_x")).len(), 1);
    assert_eq!(scan(a)[0].0, 0);
    assert!(scan("").is_empty());
}

/// The parser as first written, plainly: per-byte range checks with early exits and the
/// checksum read back as a number. The fast parser must agree with it on every input.
mod reference {
    use super::*;

    pub(super) fn parse(
        expected: Kind,
        input: &str,
    ) -> Result<(Kind, Spelling, Vec<u8>), FormatError> {
        let bytes = input.as_bytes();
        envelope(bytes)?;
        if bytes.starts_with(b"tsr_") {
            let kind = prefixed(bytes)?;
            if kind != expected {
                return Err(FormatError::WrongKind {
                    expected,
                    found: kind,
                });
            }
            return Ok((kind, Spelling::Prefixed, bytes.to_vec()));
        }
        match expected {
            Kind::Endpoint
                if bytes.len() == PLAIN_LEN && bytes.iter().all(u8::is_ascii_alphanumeric) =>
            {
                Ok((expected, Spelling::Plain64, bytes.to_vec()))
            }
            Kind::Onboarding if !bytes.contains(&b'_') => {
                let short = parse_short(bytes)?;
                Ok((expected, Spelling::ShortCode, short.to_vec()))
            }
            _ => Err(FormatError::UnknownPrefix),
        }
    }

    pub(super) fn parse_any(input: &str) -> Result<(Kind, Spelling, Vec<u8>), FormatError> {
        envelope(input.as_bytes())?;
        let kind = prefixed(input.as_bytes())?;
        Ok((kind, Spelling::Prefixed, input.as_bytes().to_vec()))
    }

    fn envelope(bytes: &[u8]) -> Result<(), FormatError> {
        if bytes.is_empty() {
            return Err(FormatError::Empty);
        }
        if bytes.len() > MAX_TOKEN_LEN {
            return Err(FormatError::TooLong {
                len: bytes.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        match bytes
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-'))
        {
            Some(at) => Err(FormatError::Charset { at }),
            None => Ok(()),
        }
    }

    fn prefixed(bytes: &[u8]) -> Result<Kind, FormatError> {
        let kind = Kind::ALL
            .into_iter()
            .find(|k| bytes.get(..PREFIX_LEN) == Some(k.prefix().as_bytes()))
            .ok_or(FormatError::UnknownPrefix)?;
        let rest = &bytes[PREFIX_LEN..];
        let body_len = rest.len().saturating_sub(CHECKSUM_LEN);
        if rest.len() < MIN_BODY + CHECKSUM_LEN || body_len > MAX_BODY {
            return Err(FormatError::BodyLength {
                len: body_len,
                min: MIN_BODY,
                max: MAX_BODY,
            });
        }
        if let Some(at) = rest.iter().position(|b| !b.is_ascii_alphanumeric()) {
            return Err(FormatError::Charset {
                at: PREFIX_LEN + at,
            });
        }
        let (signed, sum) = bytes.split_at(PREFIX_LEN + body_len);
        if !signed[signed.len() - 1].is_ascii_alphabetic() {
            return Err(FormatError::Checksum);
        }
        let mut v: u64 = 0;
        for c in sum {
            let d = BASE62
                .iter()
                .position(|b| b == c)
                .ok_or(FormatError::Checksum)?;
            v = v * 62 + u64::try_from(d).unwrap();
        }
        if v != u64::from(crc32fast::hash(signed)) {
            return Err(FormatError::Checksum);
        }
        Ok(kind)
    }
}

fn fast(r: Result<Presented<'_>, FormatError>) -> Result<(Kind, Spelling, Vec<u8>), FormatError> {
    r.map(|p| (p.kind(), p.spelling(), p.canonical().to_vec()))
}

fn assert_agrees(s: &str) {
    for kind in Kind::ALL {
        assert_eq!(
            fast(parse(kind, s)),
            reference::parse(kind, s),
            "{kind} {s:?}"
        );
    }
    assert_eq!(fast(parse_any(s)), reference::parse_any(s), "{s:?}");
}

/// Generated tokens and every near miss of them, in every kind's parser.
fn near_misses() -> impl Strategy<Value = String> {
    (
        kind_spelling(),
        128u32..=512,
        any::<usize>(),
        any::<u8>(),
        0u8..4,
    )
        .prop_map(|((kind, spelling), bits, at, c, how)| {
            let s = generate(kind, spelling, bits);
            let t = s.expose_secret();
            let at = at % t.len();
            match how {
                0 => t.to_owned(),
                1 => with_byte(t, at, CHARSET[usize::from(c) % CHARSET.len()]),
                2 if at + 1 < t.len() => swapped(t, at),
                _ => format!(
                    "{}{}",
                    &t[..at],
                    char::from(CHARSET[usize::from(c) % CHARSET.len()])
                ),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// The parser agrees with the plain reference on tokens and their near misses...
    #[test]
    fn parser_agrees_with_reference_near_tokens(s in near_misses()) {
        assert_agrees(&s);
    }

    /// ...on token-like text...
    #[test]
    fn parser_agrees_with_reference_on_token_like_text(s in token_like()) {
        assert_agrees(&s);
    }

    /// ...and on anything at all.
    #[test]
    fn parser_agrees_with_reference_on_any_text(s in "[ -~]{0,80}|.{0,80}") {
        assert_agrees(&s);
    }
}

/// Every byte value in every position class the parser distinguishes.
#[test]
fn parser_agrees_with_reference_on_every_byte() {
    let s = Secret::generate(Kind::Auth).unwrap();
    let t = s.expose_secret();
    for b in 0u8..=127 {
        let c = char::from(b);
        for at in [0, 3, 7, 8, 20, t.len() - 7, t.len() - 6, t.len() - 1] {
            let mut m = t.to_owned();
            m.replace_range(at..=at, &c.to_string());
            assert_agrees(&m);
        }
        assert_agrees(&format!("{t}{c}"));
        assert_agrees(&c.to_string());
    }
    for c in ['é', '\u{0}', '\u{80}', '\u{FFFD}', '𝔸'] {
        assert_agrees(&format!("{}{c}{}", &t[..20], &t[21..]));
    }
}

/// Other vendors' token shapes, which the scanner must never report.
const OTHER_VENDORS: &[&str] = &[
    "ghp_1234567890abcdefghijklmnopqrstuvwxyzAB",
    "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV",
    "sk_live_51H8abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH",
    "xoxb-123456789012-1234567890123-abcdefghijklmnopqrstuvwx",
    "AKIAIOSFODNN7EXAMPLE",
    "glpat-abcdefghijklmnopqrst",
    "npm_abcdefghijklmnopqrstuvwxyz0123456789",
];

proptest! {
    /// A real token is found after any character at all (a letter, a digit, a JSON escape, a
    /// URL-encoded separator) and before any character that is not a letter or digit.
    #[test]
    fn scan_finds_a_token_after_any_byte(
        before in "\\PC{0,6}",
        glue in proptest::sample::select(vec!["", "\\n", "%3D", "Bearer%20", "a", "Z", "7", "_", "=", "%22", "\\u0022"]),
        after in proptest::sample::select(vec!["", "\\n", "%26next", "\"", " ", "&x=1", "_", ".", "-x"]),
        kind in proptest::sample::select(Kind::ALL.to_vec()),
        bits in proptest::sample::select(ENTROPIES.to_vec()),
    ) {
        let s = generate(kind, Spelling::Prefixed, bits);
        let t = s.expose_secret();
        let text = format!("{before}{glue}{t}{after}");
        let at = before.len() + glue.len();
        let found: Vec<_> = scan(&text).into_iter().map(|(o, p)| (o, p.kind())).collect();
        prop_assert_eq!(found, vec![(at, kind)]);
    }

    /// Look-alikes are never reported, whatever surrounds them: one character changed, two
    /// adjacent swapped, one cut, one added; other vendors' tokens; random text with a Tessera
    /// prefix.
    #[test]
    fn scan_reports_no_look_alike(
        before in "\\PC{0,4}",
        after in proptest::sample::select(vec!["", " ", "\\n", "\"", "%26", "."]),
        kind in proptest::sample::select(Kind::ALL.to_vec()),
        bits in proptest::sample::select(ENTROPIES.to_vec()),
        how in 0u8..6,
        pick in 0usize..1000,
        noise in "[A-Za-z0-9]{10,80}",
    ) {
        let s = generate(kind, Spelling::Prefixed, bits);
        let t = s.expose_secret();
        let body = t.len() - PREFIX_LEN;
        let at = PREFIX_LEN + pick % body;
        let look_alike = match how {
            0 => {
                let old = t.as_bytes()[at];
                let new = BASE62[(BASE62.iter().position(|b| *b == old).unwrap() + 1 + pick % 61) % 62];
                with_byte(t, at, new)
            }
            1 => {
                let at = PREFIX_LEN + pick % (body - 1);
                prop_assume!(t.as_bytes()[at] != t.as_bytes()[at + 1]);
                swapped(t, at)
            }
            2 => format!("{}{}", &t[..at], &t[at + 1..]),
            3 => format!("{}{}{}", &t[..at], char::from(BASE62[pick % 62]), &t[at..]),
            4 => OTHER_VENDORS[pick % OTHER_VENDORS.len()].to_owned(),
            _ => format!("{}{noise}", kind.prefix()),
        };
        let text = format!("{before}{look_alike}{after}");
        prop_assert!(scan(&text).is_empty(), "{}", text);
    }
}

/// A corpus of log lines as they leak tokens: every one is found, and the same lines with a
/// look-alike instead find nothing.
#[test]
fn scan_corpus_of_leaky_lines() {
    let t = generate(Kind::Application, Spelling::Prefixed, 256);
    let t = t.expose_secret();
    let lines = [
        format!("{{\"msg\":\"dump\\n{t}\"}}"),
        format!("GET /login?next=https%3A%2F%2Fa%3Ftoken%3D{t} HTTP/1.1"),
        format!("Authorization: Bearer%20{t}"),
        format!("x{t}"),
        format!("9{t}"),
        format!("token={t}&user=1"),
        format!("'{t}'"),
    ];
    for line in &lines {
        let found = scan(line);
        assert_eq!(found.len(), 1, "{line}");
        assert_eq!(found[0].1.canonical(), t.as_bytes());
    }
    let typo = with_byte(t, 30, if t.as_bytes()[30] == b'x' { b'y' } else { b'x' });
    for line in &lines {
        assert!(scan(&line.replace(t, &typo)).is_empty(), "{line}");
    }
}
