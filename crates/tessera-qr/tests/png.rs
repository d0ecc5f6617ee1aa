//! PNG output decodes, through the `image` crate and rqrr, to the exact payload.

mod common;

use tessera_qr::{EcLevel, Error, Options, Payload, render_png};

#[test]
fn every_payload_at_every_level_decodes_to_itself() {
    let secret = common::onboarding_secret();
    for (payload, kind) in common::payloads(&secret).iter().zip(common::KINDS) {
        assert_eq!(payload.kind(), kind);
        for level in EcLevel::ALL {
            let options = Options::default().with_ec_level(level).with_module_size(3);
            let png = render_png(payload, &options).unwrap();
            let decoded = common::decode_png(&png);
            assert_eq!(
                decoded,
                [(common::rqrr_level(level), payload.expose_text().to_owned())],
                "{kind:?} at {level}"
            );
        }
    }
}

#[test]
fn short_codes_decode_too() {
    let payload = Payload::text(&common::short_code_secret());
    assert!(payload.expose_text().contains('-'));
    let png = render_png(&payload, &Options::default().with_module_size(1)).unwrap();
    assert_eq!(common::decode_png(&png)[0].1, payload.expose_text());
}

#[test]
fn size_follows_module_size_and_quiet_zone() {
    let payload = Payload::text(&common::onboarding_secret());
    let n = common::encoder_matrix(payload.expose_text(), EcLevel::M).len();
    for (module_size, quiet_zone) in [(1, true), (5, true), (5, false), (32, false)] {
        let options = Options::default()
            .with_module_size(module_size)
            .with_quiet_zone(quiet_zone);
        let png = render_png(&payload, &options).unwrap();
        let img = image::load_from_memory(&png).unwrap();
        let modules = n + if quiet_zone { 8 } else { 0 };
        let side = u32::try_from(modules).unwrap() * module_size;
        assert_eq!((img.width(), img.height()), (side, side));
        assert_eq!(img.color(), image::ColorType::L8);
    }
}

#[test]
fn without_quiet_zone_the_pixels_are_the_matrix() {
    let payload = Payload::text(&common::onboarding_secret());
    let options = Options::default()
        .with_module_size(2)
        .with_quiet_zone(false);
    let png = render_png(&payload, &options).unwrap();
    let img = image::load_from_memory(&png).unwrap().to_luma8();
    let matrix = common::encoder_matrix(payload.expose_text(), EcLevel::M);
    for (y, row) in matrix.iter().enumerate() {
        for (x, &dark) in row.iter().enumerate() {
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let px = img.get_pixel(
                    u32::try_from(2 * x + dx).unwrap(),
                    u32::try_from(2 * y + dy).unwrap(),
                );
                assert_eq!(px.0[0], if dark { 0 } else { 255 });
            }
        }
    }
    // ...and rqrr still reads it once a light margin is added around it.
    assert_eq!(
        common::decode_matrix(&matrix, 3, 4)[0].1,
        payload.expose_text()
    );
}

#[test]
fn module_size_out_of_range_is_refused() {
    let payload = Payload::text(&common::onboarding_secret());
    for size in [0, 33, u32::MAX] {
        let options = Options::default().with_module_size(size);
        assert_eq!(
            render_png(&payload, &options),
            Err(Error::InvalidModuleSize { size })
        );
        assert_eq!(
            tessera_qr::render_svg(&payload, &options),
            Err(Error::InvalidModuleSize { size })
        );
    }
}
