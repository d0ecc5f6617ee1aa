//! [`Options`]: how a code is encoded and drawn.

use core::fmt;

/// How much of a code can be damaged or hidden and still be read, traded against its size.
///
/// Variants go from the least to the most redundancy, as the QR standard lists them.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum EcLevel {
    /// About 7% of the code can be restored: the smallest code.
    L,
    /// About 15%: the default, a good fit for a code shown on a screen.
    #[default]
    M,
    /// About 25%.
    Q,
    /// About 30%: for printed codes that may get scuffed or carry a logo.
    H,
}

impl EcLevel {
    /// Every level, from the least to the most redundancy.
    pub const ALL: [Self; 4] = [Self::L, Self::M, Self::Q, Self::H];

    pub(crate) const fn to_qrcode(self) -> qrcode::EcLevel {
        match self {
            Self::L => qrcode::EcLevel::L,
            Self::M => qrcode::EcLevel::M,
            Self::Q => qrcode::EcLevel::Q,
            Self::H => qrcode::EcLevel::H,
        }
    }
}

impl fmt::Display for EcLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::L => "L",
            Self::M => "M",
            Self::Q => "Q",
            Self::H => "H",
        })
    }
}

/// How [`render_terminal`](crate::render_terminal) colours a code.
///
/// A scanner needs dark modules on a light background. Half-block characters paint the
/// terminal's *foreground* colour, which is dark on a light theme and light on a dark one, so
/// plain text cannot be right on both. The default therefore sets both colours explicitly.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, PartialEq)]
pub enum TerminalColors {
    /// Explicit colours through ANSI escape codes: black modules (256-colour index 16) on a white
    /// background (index 231), reset at the end of every line. Scans on dark and light themes
    /// alike; needs a terminal that understands 256-colour codes, which almost all do.
    #[default]
    Ansi,
    /// No escape codes; the glyphs draw the dark modules in the terminal's foreground colour.
    /// For light-background terminals, files and chat messages.
    DarkOnLight,
    /// No escape codes; the glyphs draw the light modules (the quiet zone included) in the
    /// terminal's foreground colour, so dark modules show the dark background. For
    /// dark-background terminals that do not take escape codes.
    LightOnDark,
}

/// How a code is encoded and drawn. Start from [`Options::default`] and change what you need:
///
/// ```
/// use tessera_qr::{EcLevel, Options};
///
/// let options = Options::default().with_ec_level(EcLevel::H).with_module_size(4);
/// assert!(options.quiet_zone);
/// ```
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[non_exhaustive]
pub struct Options {
    /// Error-correction level; [`EcLevel::M`] by default.
    pub ec_level: EcLevel,
    /// Side of one module in pixels, for PNG and SVG: 8 by default, from
    /// [`Options::MIN_MODULE_SIZE`] to [`Options::MAX_MODULE_SIZE`].
    pub module_size: u32,
    /// Whether to draw the four-module light border scanners need around the code; on by
    /// default. Turn it off only when the page around the code is light already.
    pub quiet_zone: bool,
    /// How [`render_terminal`](crate::render_terminal) colours the code.
    pub terminal_colors: TerminalColors,
}

impl Options {
    /// The smallest module size in pixels.
    pub const MIN_MODULE_SIZE: u32 = 1;
    /// The largest module size in pixels: a version 40 code with its quiet zone is then
    /// 5,920 pixels wide.
    pub const MAX_MODULE_SIZE: u32 = 32;
    /// Width of the quiet zone in modules, when it is on.
    pub const QUIET_ZONE_MODULES: usize = 4;

    /// Set the error-correction level.
    #[must_use]
    pub const fn with_ec_level(mut self, ec_level: EcLevel) -> Self {
        self.ec_level = ec_level;
        self
    }

    /// Set the module size in pixels (checked when rendering).
    #[must_use]
    pub const fn with_module_size(mut self, module_size: u32) -> Self {
        self.module_size = module_size;
        self
    }

    /// Turn the quiet zone on or off.
    #[must_use]
    pub const fn with_quiet_zone(mut self, quiet_zone: bool) -> Self {
        self.quiet_zone = quiet_zone;
        self
    }

    /// Choose how the terminal renderer colours the code.
    #[must_use]
    pub const fn with_terminal_colors(mut self, terminal_colors: TerminalColors) -> Self {
        self.terminal_colors = terminal_colors;
        self
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ec_level: EcLevel::M,
            module_size: 8,
            quiet_zone: true,
            terminal_colors: TerminalColors::Ansi,
        }
    }
}
