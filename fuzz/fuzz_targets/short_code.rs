//! Short codes: any input never panics the onboarding parser; a code built from the input's
//! digits with a correct check is accepted in any case, with aliases and dashes anywhere, and a
//! single changed digit is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::Kind;
use tessera_core::format::parse;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn weight(i: usize) -> u32 {
    match i {
        26 => 32,
        27 => 1,
        _ => u32::try_from(i).unwrap_or(0) + 2,
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse(Kind::Onboarding, &text).map(|p| p.canonical().len());

    if data.len() < 26 {
        return;
    }
    let mut digits = [0u8; 28];
    for (d, b) in digits.iter_mut().zip(data) {
        *d = b % 32;
    }
    let s: u32 = digits[..26]
        .iter()
        .enumerate()
        .map(|(i, d)| u32::from(*d) * weight(i))
        .sum();
    let v = (1021 - s % 1021) % 1021;
    digits[26] = u8::try_from(v / 32).unwrap_or(0);
    digits[27] = u8::try_from(v % 32).unwrap_or(0);
    let canonical: Vec<u8> = digits.iter().map(|d| CROCKFORD[usize::from(*d)]).collect();

    // Spell it the way a person might: case, aliases and dashes chosen by the remaining bytes.
    let style = data.get(26..).unwrap_or_default();
    let mut spelled = String::new();
    for (i, c) in canonical.iter().enumerate() {
        let bits = style.get(i).copied().unwrap_or(0);
        if bits & 1 != 0 {
            spelled.push('-');
        }
        let c = match (*c, bits >> 1 & 3) {
            (b'0', 1) => b'O',
            (b'0', 2) => b'o',
            (b'1', 1) => b'I',
            (b'1', 2) => b'l',
            (b'1', 3) => b'L',
            (c, 3) => c.to_ascii_lowercase(),
            (c, _) => c,
        };
        spelled.push(char::from(c));
    }
    let p = parse(Kind::Onboarding, &spelled).expect("a code with a correct check is accepted");
    assert_eq!(p.canonical(), canonical.as_slice(), "{spelled}");

    // One digit changed to another value: refused.
    let at = usize::from(data[0]) % 28;
    let mut changed = canonical.clone();
    let old = usize::from(digits[at]);
    changed[at] = CROCKFORD[(old + 1 + usize::from(data[1]) % 31) % 32];
    let changed = String::from_utf8(changed).expect("ascii");
    assert!(parse(Kind::Onboarding, &changed).is_err(), "{changed}");
});
