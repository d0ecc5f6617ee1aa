//! SVG output is well-formed, has exactly the encoder's dark modules, and decodes once
//! rasterised.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers outside #[test] functions panic on purpose"
)]

mod common;

use tessera_qr::{EcLevel, Options, Payload, render_svg};

/// A small well-formedness check for the SVG subset the renderer writes: tags nest and close,
/// attribute values are quoted, and no text sits between tags.
fn assert_well_formed(svg: &str) {
    let mut open: Vec<&str> = Vec::new();
    let mut rest = svg.trim_end();
    assert!(rest.starts_with("<svg "));
    while !rest.is_empty() {
        let start = rest.find('<').expect("a tag");
        assert!(rest[..start].trim().is_empty(), "text between tags");
        let end = start + rest[start..].find('>').expect("a closed tag");
        let tag = &rest[start + 1..end];
        assert!(!tag.contains('<'), "nested `<` in {tag:?}");
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unbalanced quotes in {tag:?}"
        );
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name), "mismatched close tag");
        } else if !tag.ends_with('/') {
            open.push(tag.split(' ').next().unwrap());
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "unclosed tags {open:?}");
}

fn attr<'a>(svg: &'a str, name: &str) -> &'a str {
    let key = format!(" {name}=\"");
    let start = svg.find(&key).unwrap() + key.len();
    &svg[start..start + svg[start..].find('"').unwrap()]
}

/// Paint the path's `M{x} {y}h{run}v1h-{run}z` runs into a module matrix.
fn rasterise(svg: &str) -> Vec<Vec<bool>> {
    let view_box: Vec<usize> = attr(svg, "viewBox")
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    let size = view_box[2];
    assert_eq!(view_box, [0, 0, size, size]);
    let mut matrix = vec![vec![false; size]; size];
    for run in attr(svg, "d").split('M').skip(1) {
        let (xy, rest) = run.split_once('h').unwrap();
        let (x, y) = xy.split_once(' ').unwrap();
        let (len, tail) = rest.split_once('v').unwrap();
        assert_eq!(tail, format!("1h-{len}z"));
        let (x, y, len): (usize, usize, usize) =
            (x.parse().unwrap(), y.parse().unwrap(), len.parse().unwrap());
        for module in &mut matrix[y][x..x + len] {
            assert!(!*module, "a module is painted twice");
            *module = true;
        }
    }
    matrix
}

#[test]
fn svg_is_the_module_matrix_and_decodes() {
    let secret = common::onboarding_secret();
    for payload in common::payloads(&secret) {
        for level in EcLevel::ALL {
            let options = Options::default().with_ec_level(level).with_module_size(5);
            let svg = render_svg(&payload, &options).unwrap();
            assert_well_formed(&svg);
            let matrix = rasterise(&svg);
            let expected = common::encoder_matrix(payload.expose_text(), level);
            let side = (expected.len() + 8) * 5;
            assert_eq!(attr(&svg, "width"), side.to_string());
            assert_eq!(attr(&svg, "height"), side.to_string());
            let dark = |m: &[Vec<bool>]| m.iter().flatten().filter(|&&d| d).count();
            assert_eq!(dark(&matrix), dark(&expected));
            assert_eq!(common::strip_quiet_zone(&matrix, 4), expected);
            assert_eq!(
                common::decode_matrix(&matrix, 3, 0),
                [(common::rqrr_level(level), payload.expose_text().to_owned())]
            );
        }
    }
}

#[test]
fn without_quiet_zone_the_view_box_is_the_code() {
    let payload = Payload::text(&common::onboarding_secret());
    let options = Options::default()
        .with_quiet_zone(false)
        .with_module_size(1);
    let svg = render_svg(&payload, &options).unwrap();
    assert_well_formed(&svg);
    assert_eq!(
        rasterise(&svg),
        common::encoder_matrix(payload.expose_text(), EcLevel::M)
    );
}
