//! Terminal output, read back glyph by glyph, is the encoder's module matrix, and rqrr decodes
//! it once rasterised.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

mod common;

use tessera_qr::{EcLevel, Options, Payload, TerminalColors, render_terminal};

const START: &str = "\x1b[38;5;16;48;5;231m";
const RESET: &str = "\x1b[0m";

/// Read half-block text back into module rows, `painted` meaning a glyph half is drawn.
fn parse(text: &str, colors: TerminalColors) -> Vec<Vec<bool>> {
    assert!(text.ends_with('\n'));
    let mut rows = Vec::new();
    for line in text.lines() {
        let line = match colors {
            TerminalColors::Ansi => line
                .strip_prefix(START)
                .and_then(|l| l.strip_suffix(RESET))
                .expect("every ansi line is wrapped in its colours"),
            _ => {
                assert!(!line.contains('\x1b'), "plain output has no escape codes");
                line
            }
        };
        let (top, bottom): (Vec<bool>, Vec<bool>) = line
            .chars()
            .map(|c| match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                ' ' => (false, false),
                other => panic!("unexpected character {other:?}"),
            })
            .unzip();
        rows.push(top);
        rows.push(bottom);
    }
    let paints_light = colors == TerminalColors::LightOnDark;
    rows.into_iter()
        .map(|row| {
            row.into_iter()
                .map(|painted| painted != paints_light)
                .collect()
        })
        .collect()
}

/// Drop the padding row an odd-sized matrix gets at the bottom, checking it is light.
fn trim(mut rows: Vec<Vec<bool>>) -> Vec<Vec<bool>> {
    if rows.len() > rows[0].len() {
        let last = rows.pop().unwrap();
        assert!(last.iter().all(|&dark| !dark), "padding row must be light");
    }
    rows
}

#[test]
fn text_is_the_module_matrix_and_decodes() {
    let secret = common::onboarding_secret();
    let colors = [
        TerminalColors::Ansi,
        TerminalColors::DarkOnLight,
        TerminalColors::LightOnDark,
    ];
    for payload in common::payloads(&secret) {
        for level in EcLevel::ALL {
            for colors in colors {
                let options = Options::default()
                    .with_ec_level(level)
                    .with_terminal_colors(colors);
                let text = render_terminal(&payload, &options).unwrap();
                let shown = trim(parse(&text, colors));
                let expected = common::encoder_matrix(payload.expose_text(), level);
                assert_eq!(shown.len(), expected.len() + 8);
                assert_eq!(common::strip_quiet_zone(&shown, 4), expected);
                let decoded = common::decode_matrix(&shown, 3, 0);
                assert_eq!(
                    decoded,
                    [(common::rqrr_level(level), payload.expose_text().to_owned())],
                    "{:?} at {level} in {colors:?}",
                    payload.kind()
                );
            }
        }
    }
}

#[test]
fn two_module_rows_per_line() {
    let payload = Payload::text(&common::onboarding_secret());
    for quiet_zone in [true, false] {
        let options = Options::default()
            .with_quiet_zone(quiet_zone)
            .with_terminal_colors(TerminalColors::DarkOnLight);
        let text = render_terminal(&payload, &options).unwrap();
        let n = common::encoder_matrix(payload.expose_text(), EcLevel::M).len();
        let side = n + if quiet_zone { 8 } else { 0 };
        assert_eq!(text.lines().count(), side.div_ceil(2));
        assert!(text.lines().all(|l| l.chars().count() == side));
        let shown = trim(parse(&text, TerminalColors::DarkOnLight));
        if !quiet_zone {
            assert_eq!(
                shown,
                common::encoder_matrix(payload.expose_text(), EcLevel::M)
            );
        }
    }
}
