//! Fixtures and decoders shared by the integration tests.
#![allow(dead_code, unreachable_pub, reason = "each test file uses a part")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers panic on purpose"
)]

use tessera_core::format::{Entropy, Spelling};
use tessera_core::{Kind, Secret};
use tessera_qr::{AndroidProvisioning, EcLevel, Payload, PayloadKind, Uri};

pub const COMPONENT: &str =
    "com.google.android.apps.work.clouddpc/.receivers.CloudDeviceAdminReceiver";
pub const LOCATION: &str = "https://play.google.com/managed/downloadManagingApp?identifier=setup";
pub const CHECKSUM: &str = "I5YvS0O5hXY46mb01BlRjq4oJJGs2kuUcHvVkAPEXlg";

pub fn onboarding_secret() -> Secret {
    Secret::generate(Kind::Onboarding).unwrap()
}

pub fn short_code_secret() -> Secret {
    Secret::generate_with(Kind::Onboarding, Spelling::ShortCode, Entropy::DEFAULT).unwrap()
}

pub fn provisioning() -> AndroidProvisioning {
    AndroidProvisioning::new(COMPONENT, LOCATION, CHECKSUM)
        .unwrap()
        .with_skip_encryption(false)
        .with_leave_all_system_apps_enabled(true)
}

/// One payload of each kind around `secret`.
pub fn payloads(secret: &Secret) -> Vec<Payload> {
    let uri = Uri::parse("https://mdm.example.com/enroll?site=berlin%20west#start").unwrap();
    vec![
        Payload::text(secret),
        Payload::uri(secret, &uri),
        Payload::android(secret, &provisioning()),
    ]
}

pub const KINDS: [PayloadKind; 3] = [
    PayloadKind::Text,
    PayloadKind::Uri,
    PayloadKind::AndroidProvisioning,
];

pub fn qrcode_level(level: EcLevel) -> qrcode::EcLevel {
    match level {
        EcLevel::L => qrcode::EcLevel::L,
        EcLevel::M => qrcode::EcLevel::M,
        EcLevel::Q => qrcode::EcLevel::Q,
        EcLevel::H => qrcode::EcLevel::H,
    }
}

/// The level as rqrr reports it: the two format bits of the QR standard.
pub fn rqrr_level(level: EcLevel) -> u16 {
    match level {
        EcLevel::L => 1,
        EcLevel::M => 0,
        EcLevel::Q => 3,
        EcLevel::H => 2,
    }
}

/// The encoder's own module matrix (no quiet zone), row by row, dark = `true`.
pub fn encoder_matrix(text: &str, level: EcLevel) -> Vec<Vec<bool>> {
    let code = qrcode::QrCode::with_error_correction_level(text, qrcode_level(level)).unwrap();
    let n = code.width();
    code.to_colors()
        .chunks(n)
        .map(|row| row.iter().map(|c| *c == qrcode::Color::Dark).collect())
        .collect()
}

/// Decode every QR code rqrr finds in a greyscale image: (ecc level, text) per code.
pub fn decode_luma(img: image::GrayImage) -> Vec<(u16, String)> {
    rqrr::PreparedImage::prepare(img)
        .detect_grids()
        .iter()
        .map(|grid| {
            let (meta, text) = grid.decode().unwrap();
            (meta.ecc_level, text)
        })
        .collect()
}

/// Decode a PNG through the `image` crate, as luma, with rqrr.
pub fn decode_png(png: &[u8]) -> Vec<(u16, String)> {
    let img = image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .unwrap()
        .to_luma8();
    decode_luma(img)
}

/// Rasterise a module matrix, `scale` pixels per module, inside a light `margin` of modules,
/// and decode it with rqrr.
pub fn decode_matrix(matrix: &[Vec<bool>], scale: usize, margin: usize) -> Vec<(u16, String)> {
    let h = matrix.len();
    let w = matrix.first().map_or(0, Vec::len);
    let side = |n: usize| u32::try_from((n + 2 * margin) * scale).unwrap();
    let scale = u32::try_from(scale).unwrap();
    let margin = u32::try_from(margin).unwrap();
    decode_luma(image::GrayImage::from_fn(side(w), side(h), |x, y| {
        let index = |p: u32| (p / scale).checked_sub(margin).map(|m| m as usize);
        let (mx, my) = (index(x), index(y));
        let dark = match (mx, my) {
            (Some(mx), Some(my)) if mx < w && my < h => matrix[my][mx],
            _ => false,
        };
        image::Luma([if dark { 0 } else { 255 }])
    }))
}

/// Strip a quiet zone of `q` modules from a matrix, checking that it is all light.
pub fn strip_quiet_zone(matrix: &[Vec<bool>], q: usize) -> Vec<Vec<bool>> {
    let n = matrix.len();
    for (y, row) in matrix.iter().enumerate() {
        assert_eq!(row.len(), n, "matrix is not square");
        for (x, &dark) in row.iter().enumerate() {
            if x < q || y < q || x >= n - q || y >= n - q {
                assert!(!dark, "quiet zone module ({x}, {y}) is dark");
            }
        }
    }
    matrix[q..n - q]
        .iter()
        .map(|row| row[q..n - q].to_vec())
        .collect()
}
