//! Drawing a [`Payload`] as a QR code: [`render_svg`], [`render_png`] and [`render_terminal`].
//!
//! The `qrcode` crate encodes the payload into a module matrix; each renderer draws that matrix
//! itself, dark modules on a light background, with the quiet zone when [`Options::quiet_zone`]
//! is on.

use core::fmt::Write as _;

use image::ImageEncoder as _;
use image::codecs::png::PngEncoder;
use qrcode::{Color, QrCode, types::QrError};

use crate::error::{Error, Result};
use crate::options::{Options, TerminalColors};
use crate::payload::Payload;

/// Draw the code as an SVG document: one light square and one path of dark modules, in a view
/// box of one unit per module, `module_size` pixels per module wide and high.
///
/// # Errors
///
/// [`Error::TooLarge`] when the payload does not fit any QR version at the chosen level, and
/// [`Error::InvalidModuleSize`].
///
/// # Security
///
/// The SVG carries the token: treat it as the token.
pub fn render_svg(payload: &Payload, options: &Options) -> Result<String> {
    let module_size = check_module_size(options)?;
    let m = Modules::encode(payload, options)?;
    let size = m.size;
    let px = u64::from(module_size) * size as u64;
    let mut out = String::with_capacity(256 + 16 * m.dark.len() / 2);
    // Writing to a `String` cannot fail.
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{px}\" \
         height=\"{px}\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\">\
         <rect width=\"{size}\" height=\"{size}\" fill=\"#ffffff\"/><path fill=\"#000000\" d=\""
    );
    for y in 0..size {
        let mut x = 0;
        while x < size {
            if !m.is_dark(x, y) {
                x += 1;
                continue;
            }
            let start = x;
            while x < size && m.is_dark(x, y) {
                x += 1;
            }
            let run = x - start;
            let _ = write!(out, "M{start} {y}h{run}v1h-{run}z");
        }
    }
    out.push_str("\"/></svg>\n");
    Ok(out)
}

/// Draw the code as an 8-bit greyscale PNG, `module_size` pixels per module: black `0` on
/// white `255`.
///
/// # Errors
///
/// [`Error::TooLarge`] when the payload does not fit any QR version at the chosen level,
/// [`Error::InvalidModuleSize`], and [`Error::Png`] if the encoder fails.
///
/// # Security
///
/// The image carries the token: treat it as the token.
pub fn render_png(payload: &Payload, options: &Options) -> Result<Vec<u8>> {
    let scale = check_module_size(options)?;
    let m = Modules::encode(payload, options)?;
    let scale_px = usize::try_from(scale).map_err(|_| Error::InvalidModuleSize { size: scale })?;
    let side = m.size * scale_px;
    let side_u32 = u32::try_from(side).map_err(|_| Error::InvalidModuleSize { size: scale })?;
    let mut pixels = Vec::with_capacity(side * side);
    for y in 0..m.size {
        let row_start = pixels.len();
        for x in 0..m.size {
            let luma = if m.is_dark(x, y) { 0 } else { 255 };
            pixels.extend(core::iter::repeat_n(luma, scale_px));
        }
        for _ in 1..scale_px {
            pixels.extend_from_within(row_start..row_start + side);
        }
    }
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(&pixels, side_u32, side_u32, image::ExtendedColorType::L8)
        .map_err(|e| Error::Png(e.to_string()))?;
    Ok(png)
}

/// Draw the code as text for a terminal: Unicode half blocks (`▀`, `▄`, `█` and space), two
/// module rows per line, one module per column, each line ending in `\n`.
///
/// [`Options::terminal_colors`] decides how it stays readable: by default explicit ANSI
/// colours (black on white) that scan on dark and light themes alike; or plain text, drawing
/// dark modules for light backgrounds or light modules for dark ones. See [`TerminalColors`].
/// Keep the quiet zone on: terminals rarely leave a light border of their own.
///
/// # Errors
///
/// [`Error::TooLarge`] when the payload does not fit any QR version at the chosen level.
///
/// # Security
///
/// The text carries the token: print it only to the person it is meant for.
pub fn render_terminal(payload: &Payload, options: &Options) -> Result<String> {
    const START: &str = "\x1b[38;5;16;48;5;231m";
    const RESET: &str = "\x1b[0m";
    let m = Modules::encode(payload, options)?;
    let (ansi, paint_light) = match options.terminal_colors {
        TerminalColors::Ansi => (true, false),
        TerminalColors::DarkOnLight => (false, false),
        TerminalColors::LightOnDark => (false, true),
    };
    let mut out = String::with_capacity((m.size + 12) * m.size.div_ceil(2) * 3);
    for y in (0..m.size).step_by(2) {
        if ansi {
            out.push_str(START);
        }
        for x in 0..m.size {
            // A row below the matrix is light, like the quiet zone.
            let top = m.is_dark(x, y) != paint_light;
            let bottom = (y + 1 < m.size && m.is_dark(x, y + 1)) != paint_light;
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        if ansi {
            out.push_str(RESET);
        }
        out.push('\n');
    }
    Ok(out)
}

fn check_module_size(options: &Options) -> Result<u32> {
    let size = options.module_size;
    if (Options::MIN_MODULE_SIZE..=Options::MAX_MODULE_SIZE).contains(&size) {
        Ok(size)
    } else {
        Err(Error::InvalidModuleSize { size })
    }
}

/// The square module matrix of an encoded payload, quiet zone included when asked for.
struct Modules {
    size: usize,
    dark: Vec<bool>,
}

impl Modules {
    fn encode(payload: &Payload, options: &Options) -> Result<Self> {
        let text = payload.expose_text();
        let level = options.ec_level;
        let code =
            QrCode::with_error_correction_level(text, level.to_qrcode()).map_err(|e| match e {
                QrError::DataTooLong => Error::TooLarge {
                    bytes: text.len(),
                    level,
                },
                other => Error::Encode(other.to_string()),
            })?;
        let n = code.width();
        let quiet = if options.quiet_zone {
            Options::QUIET_ZONE_MODULES
        } else {
            0
        };
        let size = n + 2 * quiet;
        let mut dark = vec![false; size * size];
        for (i, color) in code.to_colors().into_iter().enumerate() {
            let (x, y) = (i % n, i / n);
            dark[(y + quiet) * size + x + quiet] = color == Color::Dark;
        }
        Ok(Self { size, dark })
    }

    fn is_dark(&self, x: usize, y: usize) -> bool {
        self.dark[y * self.size + x]
    }
}
