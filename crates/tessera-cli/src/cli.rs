//! The command line, as clap reads it. Each doc comment is the `--help` text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::EXIT_CODES_HELP;

/// Issue, inspect, rotate, revoke and scan for Tessera tokens.
///
/// Tokens live in a SQLite database (default: `tessera.db` in the user's data directory) or in
/// PostgreSQL (`--database-url`). Start with `tessera init`.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, after_help = EXIT_CODES_HELP, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Global {
    /// SQLite database file [default: tessera.db in the user's data directory, e.g.
    /// ~/.local/share/tessera]
    #[arg(long, env = "TESSERA_DB", global = true, value_name = "PATH")]
    pub(crate) db: Option<PathBuf>,
    /// Use PostgreSQL at this URL (postgres://user@host/database) instead of --db; sqlite:PATH
    /// names a SQLite file, as tessera-service reads the same variable
    #[arg(
        long,
        env = "TESSERA_DATABASE_URL",
        global = true,
        value_name = "URL",
        hide_env_values = true
    )]
    pub(crate) database_url: Option<String>,
    /// PostgreSQL schema for Tessera's tables (created by `init`) [default: the server's
    /// search_path]: share a database with an application's own tables
    #[arg(
        long,
        env = "TESSERA_DATABASE_SCHEMA",
        global = true,
        value_name = "NAME",
        requires = "database_url"
    )]
    pub(crate) database_schema: Option<String>,
    /// Pepper key file [default: tessera.key beside the SQLite database, or in the data
    /// directory for PostgreSQL]; the environment variable TESSERA_PEPPER (64 hex characters)
    /// takes precedence over any file
    #[arg(long, env = "TESSERA_KEY_FILE", global = true, value_name = "PATH")]
    pub(crate) key: Option<PathBuf>,
    /// Act as this user, recorded in the audit trail [default: $USER, else "operator"]
    #[arg(long = "as", env = "TESSERA_USER", global = true, value_name = "USER")]
    pub(crate) as_user: Option<String>,
    /// Act as an administrator: manage every user's auth tokens and issue them for others
    #[arg(long, global = true)]
    pub(crate) admin: bool,
    /// Print results as JSON for scripts (errors too, on standard error)
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Show what the library does on standard error: -v info, -vv debug, -vvv trace (secrets
    /// are never logged). Without -v, RUST_LOG (e.g. RUST_LOG=tessera=debug) is used if set
    #[arg(short = 'v', long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Do not ask before destructive commands (required when there is no terminal)
    #[arg(short = 'y', long, global = true)]
    pub(crate) yes: bool,
    /// Pretend the time is this RFC 3339 instant (for testing and planning sweeps)
    #[arg(
        long,
        env = "TESSERA_NOW",
        global = true,
        hide = true,
        value_name = "TIME"
    )]
    pub(crate) now: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create the database, apply its migrations and create the pepper key file
    ///
    /// The key file (hex, mode 0600) is written beside the database as tessera.key, unless
    /// TESSERA_PEPPER is set. Keep it out of the database's backups: it is what makes a leaked
    /// database useless. An existing key file is never overwritten.
    Init,
    /// Mass-deployment tokens for client installers
    #[command(subcommand)]
    Deployment(DeploymentCmd),
    /// Device onboarding (enrollment) tokens: usage-limited, shown as QR codes
    #[command(subcommand)]
    Onboarding(OnboardingCmd),
    /// Endpoint tokens: primaries per endpoint and method, secondaries mapped to them
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Per-user auth tokens scoped to a subset of the user's delegated actions
    #[command(subcommand)]
    Auth(AuthCmd),
    /// Application bearer tokens with a per-IP usage log, IP blocking and inactivity rules
    #[command(subcommand)]
    App(AppCmd),
    /// List tokens of every kind
    List(ListArgs),
    /// Show one token
    Show {
        /// Token id (or a unique prefix of at least 6 characters)
        id: String,
    },
    /// Rotate a token: issue a successor with the same settings and retire the old one
    Rotate {
        /// Token id (or a unique prefix)
        id: String,
        /// Keep the old token working this long (e.g. 30m, 12h, 7d); at once by default
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
        grace: Option<String>,
    },
    /// Revoke tokens of any kind, for good
    Revoke {
        /// Token ids (or unique prefixes)
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Apply expiry, auto-renewal, grace ends, dormancy and deletion to every token
    Sweep(SweepArgs),
    /// Show the audit trail, oldest first
    Audit(AuditArgs),
    /// Check a token without using it: its kind, id and whether it is in force
    ///
    /// Exits 0 when the token is in force and 3 when it is not (malformed, unknown, expired,
    /// revoked, ...). Nothing is recorded: use the kind's own check (`deployment verify`,
    /// `endpoint check`, `auth check`, `app verify`, `onboarding redeem`) to exercise it.
    Verify {
        /// The token [default: read from standard input, which keeps it out of shell history]
        token: Option<String>,
    },
    /// Find Tessera tokens in text (logs, repositories) by prefix and checksum
    ///
    /// Only text with a Tessera prefix and a valid checksum is reported, so look-alikes and
    /// random text give no false positives. Each finding shows file, line, kind, hint and the
    /// token's current state in the database. Plain 64-character endpoint secondaries and
    /// onboarding short codes have no prefix and are not searched for. A token is found after
    /// any character (`\n<token>` in JSON, `%3D<token>` in a URL, right after a letter).
    ///
    /// Exit code 5 when at least one token is found, 0 when the input is clean: it can gate CI.
    Scan(ScanArgs),
    /// Rotate the pepper: a new current key, older keys kept for validation, then retired
    #[command(subcommand)]
    Pepper(PepperCmd),
    /// Print a shell completion script (e.g. `tessera completions bash > /etc/bash_completion.d/tessera`)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

/// `tessera list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only this kind
    #[arg(long, value_enum)]
    pub(crate) kind: Option<KindArg>,
    /// Only tokens in force (active, or rotated and in their grace window)
    #[arg(long)]
    pub(crate) active: bool,
    /// Only tokens in this state, as of now (e.g. `exhausted`: usage limit reached)
    #[arg(long, value_enum)]
    pub(crate) state: Option<StateArg>,
    /// Include deleted tokens (hidden by default; `--state deleted` shows only them)
    #[arg(long)]
    pub(crate) all: bool,
    /// Only tokens in force that expire within this duration (e.g. 7d, 12h): whose owners to
    /// notify
    #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
    pub(crate) expiring: Option<String>,
}

/// A token state on the command line: the words listings show.
#[derive(Clone, Copy, Debug, Eq, PartialEq, ValueEnum)]
pub(crate) enum StateArg {
    /// In force
    Active,
    /// Deactivated by an administrator, reversible (shown as `deactivated`)
    #[value(alias = "deactivated")]
    Disabled,
    /// Unused too long, reversible by an administrator
    Dormant,
    /// Rotated, still in force during its grace window
    Superseded,
    /// Rotated, grace window over
    #[value(alias = "rotated_out")]
    RotatedOut,
    /// Past its expiry
    Expired,
    /// Usage limit reached
    Exhausted,
    /// Revoked for good
    Revoked,
    /// Deleted for good
    Deleted,
}

/// A token kind on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum KindArg {
    /// Deployment tokens
    Deployment,
    /// Onboarding tokens
    Onboarding,
    /// Endpoint tokens
    Endpoint,
    /// Auth tokens
    Auth,
    /// Application tokens
    #[value(alias = "app")]
    Application,
}

/// `tessera sweep`.
#[derive(Debug, Args)]
pub(crate) struct SweepArgs {
    /// Show what would happen and change nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Application tokens unused this long go dormant (every command refuses and shows them so,
    /// from `TESSERA_DORMANT_AFTER`)
    #[arg(
        long,
        value_name = "DURATION",
        env = "TESSERA_DORMANT_AFTER",
        default_value = "30d"
    )]
    pub(crate) dormant_after: String,
    /// Application tokens unused this long are deleted for good (every command treats them so,
    /// from `TESSERA_DELETE_AFTER`)
    #[arg(
        long,
        value_name = "DURATION",
        env = "TESSERA_DELETE_AFTER",
        default_value = "90d"
    )]
    pub(crate) delete_after: String,
}

/// `tessera audit`.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Only events about this token (id or unique prefix)
    #[arg(long)]
    pub(crate) token: Option<String>,
    /// Only events by this actor: a user name, `system` or `client`
    #[arg(long)]
    pub(crate) actor: Option<String>,
    /// Only events at or after: RFC 3339 (2026-01-31T10:00:00Z), a date (2026-01-31) or a
    /// duration back from now (24h or -24h; +1h is ahead)
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub(crate) since: Option<String>,
    /// Only events before: RFC 3339, a date or a duration back from now
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub(crate) until: Option<String>,
    /// At most this many events (the oldest that match)
    #[arg(long)]
    pub(crate) limit: Option<usize>,
}

/// `tessera pepper ...`.
///
/// The key file holds one key per line, `ID:HEX`, the current one first (a bare HEX line is
/// key id 1, as `tessera init` writes it). Every digest and sealed secret records the key id it
/// was made under; tokens keep validating under a previous key until it is retired.
#[derive(Debug, Subcommand)]
pub(crate) enum PepperCmd {
    /// Key ids: configured (current, previous) or missing, and the tokens in force under each
    Status,
    /// Make a new key current (the next key id), keep the others for validation, and re-seal
    /// every sealed secret (installer commands, QR codes) under it
    Rotate,
    /// Drop a previous key from the key file, once no token in force depends on it
    Retire {
        /// The key id
        id: u32,
        /// Retire it even though tokens in force depend on it: they stop working
        #[arg(long)]
        force: bool,
    },
}

/// `tessera scan`.
#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// Files to scan [default: standard input]
    pub(crate) files: Vec<PathBuf>,
    /// Revoke every token found that is still revocable (asks first unless --yes)
    #[arg(long, conflicts_with = "offline")]
    pub(crate) revoke: bool,
    /// Do not open the database: report kind, hint and place only
    #[arg(long)]
    pub(crate) offline: bool,
}

/// `tessera deployment ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum DeploymentCmd {
    /// Generate a token; older ones stay valid until their own expiry
    Generate {
        /// A name for reference (need not be unique; renewals keep it)
        #[arg(long)]
        name: String,
        /// Expiry: a duration ahead (90m, 12h, 30d), a date (2027-01-31) or RFC 3339 (2027-01-31T10:00:00Z)
        #[arg(long, value_name = "EXPIRY", allow_hyphen_values = true)]
        expires: Option<String>,
        /// On expiry, issue a successor valid 90 days (by `tessera sweep`): the default, kept
        /// for compatibility
        #[arg(long, conflicts_with = "no_auto_renew")]
        auto_renew: bool,
        /// Do not renew this token when it expires (renewal is on by default)
        #[arg(long)]
        no_auto_renew: bool,
        /// Also print the installer command: a template with {token} where the token goes
        #[arg(long, value_name = "TEMPLATE")]
        command: Option<String>,
    },
    /// List the tokens; the most recent one in force is marked latest
    List,
    /// Expire a token at once; commands rendered with it stop working
    Expire {
        /// Token id (or a unique prefix)
        id: String,
    },
    /// Render the installer command for the most recent token in force
    ///
    /// With no token given (none as an argument, nothing on standard input) the command is
    /// rendered with the most recent token's secret, which is kept sealed under the pepper: it
    /// can be shown at any time, also after `tessera sweep` renewed the token. With a token
    /// given, it must be the most recent one.
    Command {
        /// The command template, with {token} where the token goes
        #[arg(long, value_name = "TEMPLATE")]
        template: String,
        /// The token [default: standard input if piped, else the most recent token's]
        token: Option<String>,
    },
    /// Validate a token as an installer would present it (recorded as a use)
    Verify {
        /// The token [default: read from standard input]
        token: Option<String>,
    },
}

/// A QR output format.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum QrFormat {
    /// An SVG file (needs --out)
    Svg,
    /// A PNG file (needs --out)
    Png,
    /// Half blocks in the terminal
    Terminal,
}

/// What the QR code carries.
#[derive(Debug, Args)]
pub(crate) struct QrArgs {
    /// Carry a link to this base URI with the token in a query parameter
    /// (e.g. https://mdm.example.com/enroll) instead of the token alone
    #[arg(long, value_name = "URI", conflicts_with = "android_component")]
    pub(crate) uri: Option<String>,
    /// Carry the Android Enterprise provisioning JSON: the DPC's admin receiver
    /// (package/.Receiver); needs --android-download and --android-checksum
    #[arg(long, value_name = "COMPONENT", requires_all = ["android_download", "android_checksum"])]
    pub(crate) android_component: Option<String>,
    /// Android provisioning: https URL of the DPC's APK
    #[arg(long, value_name = "URL", requires = "android_component")]
    pub(crate) android_download: Option<String>,
    /// Android provisioning: base64 SHA-256 of the APK's signing certificate; the standard
    /// alphabet (+ /) is converted to the URL-safe one Android reads
    #[arg(long, value_name = "SHA256", requires = "android_component")]
    pub(crate) android_checksum: Option<String>,
    /// Android provisioning: the admin extras key your DPC reads the token from [default:
    /// Android Device Policy's com.google.android.apps.work.clouddpc.EXTRA_ENROLLMENT_TOKEN]
    #[arg(long, value_name = "KEY", requires = "android_component")]
    pub(crate) android_extras_key: Option<String>,
    /// Error correction: l, m (screens), q, h (printed codes) [default: m]
    #[arg(long, value_name = "LEVEL")]
    pub(crate) ec: Option<String>,
}

impl QrArgs {
    /// The options given, by name, for a usage error when no code is drawn.
    pub(crate) fn given(&self) -> Vec<&'static str> {
        let mut given = Vec::new();
        if self.uri.is_some() {
            given.push("--uri");
        }
        if self.android_component.is_some() {
            given.push("--android-component");
        }
        if self.android_download.is_some() {
            given.push("--android-download");
        }
        if self.android_checksum.is_some() {
            given.push("--android-checksum");
        }
        if self.android_extras_key.is_some() {
            given.push("--android-extras-key");
        }
        if self.ec.is_some() {
            given.push("--ec");
        }
        given
    }
}

/// `tessera onboarding ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum OnboardingCmd {
    /// Create a token; optionally draw it as a QR code at once
    Create {
        #[command(flatten)]
        spec: OnboardingSpec,
        /// Bind the token to this device id
        #[arg(long, conflicts_with = "first_device")]
        device: Option<String>,
        /// Bind the token to the first device that redeems it
        #[arg(long)]
        first_device: bool,
        /// Spell the token as a short code a person can type on a device
        #[arg(long)]
        short_code: bool,
        /// Draw the token as a QR code too
        #[arg(long, value_enum, value_name = "FORMAT")]
        qr: Option<QrFormat>,
        /// Where the SVG or PNG goes (created with mode 0600; never overwritten)
        #[arg(long, value_name = "FILE", requires = "qr")]
        out: Option<PathBuf>,
        #[command(flatten)]
        qr_args: QrArgs,
    },
    /// Create many tokens at once, e.g. one per device group, with a progress bar
    ///
    /// The secrets are written once, as tab-separated lines (id, group, policy, token) or JSON
    /// lines with --json, to --out (created with mode 0600, never overwritten) or to standard
    /// output.
    Bulk {
        #[command(flatten)]
        spec: OnboardingSpec,
        /// More device groups: one batch of --count tokens per group
        #[arg(long = "also-group", value_name = "GROUP")]
        also_groups: Vec<String>,
        /// Tokens per group
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Where the secrets go [default: standard output]
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Redeem a token for a device, as the device would (consumes one use)
    Redeem {
        /// The device id
        #[arg(long)]
        device: String,
        /// The token [default: read from standard input]
        token: Option<String>,
    },
    /// Revoke tokens: no further device can enroll with them
    Revoke {
        /// Token ids (or unique prefixes)
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Draw a token's QR code again: by id (a token created with --keep-sealed), or a token you
    /// hold
    ///
    /// Given an id, the secret is opened from its sealed copy. Given a token (as the argument
    /// or on standard input), it is checked first. Either way it must be an onboarding token of
    /// this database that can still enroll devices.
    Qr {
        /// Output format
        #[arg(long, value_enum, default_value = "terminal")]
        format: QrFormat,
        /// Where the SVG or PNG goes (created with mode 0600; never overwritten)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        qr_args: QrArgs,
        /// A token id (or a unique prefix) of a token created with --keep-sealed, or the token
        /// itself [default: the token, read from standard input]
        #[arg(value_name = "ID_OR_TOKEN")]
        token: Option<String>,
    },
    /// List the tokens with their uses and enrolled devices
    List,
}

/// What an onboarding token applies.
#[derive(Debug, Args)]
pub(crate) struct OnboardingSpec {
    /// Enrollment policy applied to devices
    #[arg(long)]
    pub(crate) policy: String,
    /// Device group devices are placed in
    #[arg(long)]
    pub(crate) group: String,
    /// Uses allowed [default: 1]
    #[arg(long, conflicts_with = "unlimited")]
    pub(crate) uses: Option<u64>,
    /// Any number of uses
    #[arg(long)]
    pub(crate) unlimited: bool,
    /// Expiry: a duration ahead (90m, 12h, 30d), a date (2027-01-31) or RFC 3339 (2027-01-31T10:00:00Z)
    #[arg(long, value_name = "EXPIRY", allow_hyphen_values = true)]
    pub(crate) expires: Option<String>,
    /// Keep the secret sealed under the pepper (encrypted, never in the clear) so that
    /// `tessera onboarding qr ID` can show its QR code again while it can enroll devices
    #[arg(long)]
    pub(crate) keep_sealed: bool,
}

/// An HTTP method on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum MethodArg {
    /// GET
    #[value(alias = "GET")]
    Get,
    /// POST
    #[value(alias = "POST")]
    Post,
    /// DELETE
    #[value(alias = "DELETE")]
    Delete,
}

/// `tessera endpoint ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum EndpointCmd {
    /// Turn token authentication on: generates the GET and POST primaries (and DELETE)
    Enable {
        /// The endpoint (a route or configured name)
        endpoint: String,
        /// The endpoint allows deleting: generate a DELETE primary too
        #[arg(long)]
        allow_delete: bool,
    },
    /// Turn token authentication off: revokes the primaries and removes mappings to them
    Disable {
        /// The endpoint
        endpoint: String,
    },
    /// Allow or forbid DELETE: allowing generates its primary, forbidding revokes it
    AllowDelete {
        /// The endpoint
        endpoint: String,
        /// Forbid deleting instead
        #[arg(long)]
        off: bool,
    },
    /// Primary tokens
    #[command(subcommand)]
    Primary(PrimaryCmd),
    /// Secondary tokens, one per integrating application
    #[command(subcommand)]
    Secondary(SecondaryCmd),
    /// Check a request (endpoint, method, token) as the endpoint would (recorded as traffic)
    Check {
        /// The endpoint
        endpoint: String,
        /// The method
        #[arg(value_enum)]
        method: MethodArg,
        /// The client address, for the audit trail (any spelling: IPv4, IPv6, IPv4-mapped, with a zone id)
        #[arg(long, value_parser = ip_arg)]
        ip: Option<std::net::IpAddr>,
        /// The token [default: read from standard input]
        token: Option<String>,
    },
    /// Accepted requests per token on an endpoint: which application talks to it
    Traffic {
        /// The endpoint
        endpoint: String,
        /// Only requests carried by this token (id or a unique prefix)
        #[arg(long, value_name = "ID")]
        token: Option<String>,
        /// Only requests carried by secondaries of this name (the integrating application)
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Only requests at or after (RFC 3339, a date, or a duration back such as 24h)
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        since: Option<String>,
        /// Only requests before (RFC 3339, a date, or a duration back)
        #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
        until: Option<String>,
    },
}

/// `tessera endpoint primary ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum PrimaryCmd {
    /// List an endpoint's primaries in force
    List {
        /// The endpoint
        endpoint: String,
    },
    /// Regenerate the primary of a method; the old one is refused at once or after --grace
    Regenerate {
        /// The endpoint
        endpoint: String,
        /// The method
        #[arg(value_enum)]
        method: MethodArg,
        /// Keep the old primary working this long (e.g. 10m, 1h)
        #[arg(long, value_name = "DURATION", allow_hyphen_values = true)]
        grace: Option<String>,
    },
}

/// `tessera endpoint secondary ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum SecondaryCmd {
    /// Create a secondary: 64 random alphanumerics, enabled, mapped nowhere yet
    Create {
        /// Name it after the integrating application (need not be unique: an application may
        /// hold several)
        #[arg(long)]
        name: String,
        /// What it is for
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List secondaries (active ones unless --all)
    List {
        /// Include deactivated secondaries
        #[arg(long)]
        all: bool,
        /// Hide secondaries not assigned to the endpoint in view (--endpoint), or mapped nowhere
        /// when no endpoint is in view
        #[arg(long)]
        hide_unassigned: bool,
        /// The endpoint in view: with --hide-unassigned, only secondaries mapped to it
        #[arg(long, value_name = "ENDPOINT")]
        endpoint: Option<String>,
    },
    /// Turn a secondary's enabled toggle on (state unchanged)
    Enable {
        /// Secondary id (or a unique prefix)
        id: String,
    },
    /// Turn a secondary's enabled toggle off: every integration using it stops, refused as
    /// `toggled_off`; it stays active and listed (compare `deactivate`)
    Disable {
        /// Secondary id (or a unique prefix)
        id: String,
    },
    /// Activate a deactivated secondary
    Activate {
        /// Secondary id (or a unique prefix)
        id: String,
    },
    /// Deactivate a secondary: state `deactivated`, it leaves the default listing and is
    /// refused as `disabled` (deactivated) until activated
    Deactivate {
        /// Secondary id (or a unique prefix)
        id: String,
    },
    /// Give a secondary a new value in place, keeping its id and mappings
    Regenerate {
        /// Secondary id (or a unique prefix)
        id: String,
    },
    /// Map a secondary to the primary of an endpoint and method
    Map {
        /// Secondary id (or a unique prefix)
        id: String,
        /// The endpoint
        endpoint: String,
        /// The method
        #[arg(value_enum)]
        method: MethodArg,
    },
    /// Remove a mapping
    Unmap {
        /// Secondary id (or a unique prefix)
        id: String,
        /// The endpoint
        endpoint: String,
        /// The method
        #[arg(value_enum)]
        method: MethodArg,
    },
    /// Turn a mapping on
    MapEnable {
        /// Secondary id (or a unique prefix)
        id: String,
        /// The endpoint
        endpoint: String,
        /// The method
        #[arg(value_enum)]
        method: MethodArg,
    },
    /// Turn a mapping off: stops that integration alone
    MapDisable {
        /// Secondary id (or a unique prefix)
        id: String,
        /// The endpoint
        endpoint: String,
        /// The method
        #[arg(value_enum)]
        method: MethodArg,
    },
}

/// `tessera auth ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum AuthCmd {
    /// Generate a token for yourself, or with --admin for another user (shown as generated-by)
    ///
    /// The CLI has no user directory: pass the actions delegated to the owner with --delegated.
    /// The scope must be a subset of them.
    Generate {
        /// A name for the token, unique among the owner's tokens in force, ignoring case
        #[arg(long)]
        name: String,
        /// The owner [default: the acting user, see --as]
        #[arg(long = "for", value_name = "USER")]
        owner: Option<String>,
        /// Actions the token may do, comma-separated
        #[arg(long, value_delimiter = ',', required = true)]
        scope: Vec<String>,
        /// Actions delegated to the owner now, comma-separated [default: the scope]
        #[arg(long, value_delimiter = ',')]
        delegated: Vec<String>,
        /// Expiry: a duration ahead (90m, 12h, 30d), a date (2027-01-31) or RFC 3339 (2027-01-31T10:00:00Z)
        #[arg(long, value_name = "EXPIRY", allow_hyphen_values = true)]
        expires: String,
    },
    /// List your tokens, or with --admin everyone's (deleted ones only with --all)
    List {
        /// Only this owner's (an administrator's option)
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
        /// Include deleted tokens
        #[arg(long)]
        all: bool,
    },
    /// Delete tokens (several at once); permission is checked for all before any is deleted
    ///
    /// Deletion is final: deleting a token that is already deleted or revoked is refused
    /// (exit 2) and nothing is deleted, as repeating `revoke`, `expire` or `deactivate` is.
    Delete {
        /// Token ids (or unique prefixes)
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Check a request for an action, as the REST API would (recorded as a use)
    Check {
        /// The action requested
        #[arg(long)]
        action: String,
        /// Actions the owner holds now, comma-separated
        #[arg(long, value_delimiter = ',', required = true)]
        held: Vec<String>,
        /// The token [default: read from standard input]
        token: Option<String>,
    },
}

/// `tessera app ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum AppCmd {
    /// Generate a token, active at once
    Create {
        /// Unique name, ignoring case: letters, digits and dashes, at most 32
        #[arg(long)]
        name: String,
        /// What it is for, at most 1024 characters
        #[arg(long, default_value = "")]
        description: String,
        /// Access types, comma-separated, each once: security-director and/or
        /// third-party-feeds (the set TESSERA_ACCESS_TYPES configures, comma-separated)
        #[arg(long, value_delimiter = ',', required = true)]
        access: Vec<String>,
    },
    /// List the tokens
    List,
    /// Deactivate a token: all access is refused until it is activated
    Deactivate {
        /// Token id (or a unique prefix)
        id: String,
    },
    /// Activate a deactivated or dormant token
    Activate {
        /// Token id (or a unique prefix)
        id: String,
    },
    /// The addresses that used a token, with first and last use
    Ips {
        /// Token id (or a unique prefix)
        id: String,
    },
    /// Block an address for a token
    Block {
        /// Token id (or a unique prefix)
        id: String,
        /// The address, in any spelling (10.0.0.9, ::ffff:10.0.0.9, 2001:db8::1, fe80::1%eth0): all spellings of one address are one
        #[arg(value_parser = ip_arg)]
        ip: std::net::IpAddr,
    },
    /// Unblock an address for a token
    Unblock {
        /// Token id (or a unique prefix)
        id: String,
        /// The address, in any spelling (10.0.0.9, ::ffff:10.0.0.9, 2001:db8::1, fe80::1%eth0): all spellings of one address are one
        #[arg(value_parser = ip_arg)]
        ip: std::net::IpAddr,
    },
    /// Validate a token from an address, as the API would (recorded in the IP log)
    Verify {
        /// The client address, in any spelling (IPv4, IPv6, IPv4-mapped, with a zone id)
        #[arg(long, value_parser = ip_arg)]
        ip: std::net::IpAddr,
        /// The token, or a whole `Bearer <token>` header [default: read from standard input]
        token: Option<String>,
    },
}

/// An address in any spelling, read as the library reads it (one canonical form).
fn ip_arg(s: &str) -> Result<std::net::IpAddr, String> {
    tessera::core::net::parse_ip(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
