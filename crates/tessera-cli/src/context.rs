//! Where the database and the pepper are, opening them, and the [`Ctx`] every command runs in.

use std::io::{BufRead, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera::core::Kind;
use tessera::core::clock::{Clock, ManualClock, SystemClock};
use tessera::core::digest::{KeyId, Pepper, Peppers};
use tessera::core::format::{self, Presented};
use tessera::core::id::{AccessType, TokenId};
use tessera::core::kind::application::{AccessCatalog, InactivityPolicy};
use tessera::core::record::TokenRecord;
use tessera::store::TokenFilter;
use tessera::{Issued, LedgerSettings, Principal, Store, TokenService};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

use crate::cli::Global;
use crate::error::{CliError, Result};
use crate::output::Out;

/// The environment variable that holds the pepper as 64 hex characters, instead of a key file.
pub(crate) const PEPPER_ENV: &str = "TESSERA_PEPPER";
/// The key file's name beside the database.
pub(crate) const KEY_FILE: &str = "tessera.key";
/// The database file's name in the data directory.
pub(crate) const DB_FILE: &str = "tessera.db";
/// The key id of the pepper the CLI creates.
const KEY_ID: KeyId = KeyId(1);

/// Where the tokens are kept.
#[derive(Clone)]
pub(crate) enum Backend {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (never printed: it may hold a password), and a schema for Tessera's
    /// tables when not the server's default.
    Postgres(String, Option<String>),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            Self::Postgres(_, schema) => f
                .debug_struct("Postgres")
                .field("schema", schema)
                .finish_non_exhaustive(),
        }
    }
}

impl Backend {
    /// The backend the options name: `--database-url` (`postgres://`, or `sqlite:PATH` as
    /// `tessera-service` reads the same variable), else SQLite at `--db`.
    pub(crate) fn from_global(g: &Global) -> Result<Self> {
        if let Some(url) = &g.database_url {
            if let Some(path) = url.strip_prefix("sqlite:") {
                if path.is_empty() {
                    return Err(CliError::usage(
                        "--database-url sqlite: names no file; write sqlite:PATH, e.g. \
                         sqlite:/var/lib/tessera/tokens.db",
                    ));
                }
                if g.database_schema.is_some() {
                    return Err(CliError::usage(
                        "--database-schema is for PostgreSQL; a SQLite database has no schemas",
                    ));
                }
                return Ok(Self::Sqlite(PathBuf::from(path)));
            }
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                // The URL is not repeated: it may hold a password.
                return Err(CliError::usage(
                    "--database-url (or TESSERA_DATABASE_URL) is neither postgres://... nor \
                     sqlite:PATH",
                ));
            }
            return Ok(Self::Postgres(url.clone(), g.database_schema.clone()));
        }
        match &g.db {
            Some(p) => Ok(Self::Sqlite(p.clone())),
            None => Ok(Self::Sqlite(data_dir()?.join(DB_FILE))),
        }
    }

    /// A description for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("SQLite database {}", p.display()),
            Self::Postgres(_, None) => String::from("PostgreSQL database (--database-url)"),
            Self::Postgres(_, Some(s)) => {
                format!("PostgreSQL database (--database-url), schema {s}")
            }
        }
    }
}

/// The user's data directory for Tessera: `$XDG_DATA_HOME/tessera`, else
/// `~/.local/share/tessera` (`~/Library/Application Support/tessera` on macOS,
/// `%APPDATA%\tessera` on Windows).
pub(crate) fn data_dir() -> Result<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let base = if cfg!(windows) {
        var("APPDATA")
    } else if cfg!(target_os = "macos") {
        var("HOME").map(|h| h.join("Library").join("Application Support"))
    } else {
        var("XDG_DATA_HOME").or_else(|| var("HOME").map(|h| h.join(".local").join("share")))
    };
    base.map(|b| b.join("tessera")).ok_or_else(|| {
        CliError::usage(
            "cannot find your data directory (HOME is not set); pass --db PATH or set TESSERA_DB",
        )
    })
}

/// The key file the options name: `--key`, else beside the SQLite database, else in the data
/// directory.
pub(crate) fn key_path(g: &Global, backend: &Backend) -> Result<PathBuf> {
    if let Some(k) = &g.key {
        return Ok(k.clone());
    }
    match backend {
        Backend::Sqlite(db) => Ok(db.parent().unwrap_or_else(|| Path::new("")).join(KEY_FILE)),
        Backend::Postgres(..) => Ok(data_dir()?.join(KEY_FILE)),
    }
}

/// The pepper from `TESSERA_PEPPER`, if set.
pub(crate) fn pepper_from_env() -> Result<Option<Zeroizing<String>>> {
    match std::env::var(PEPPER_ENV) {
        Ok(v) => {
            let v = Zeroizing::new(v);
            parse_keys(&v).map_err(|e| CliError::usage(format!("{PEPPER_ENV}: {e}")))?;
            Ok(Some(v))
        }
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(CliError::usage(format!(
            "{PEPPER_ENV} is not valid text; set it to 64 hexadecimal characters"
        ))),
    }
}

/// The peppers a key file (or `TESSERA_PEPPER`) holds, current first: one per line (or
/// comma), each `ID:HEX` (a key id and 64 hex characters) or a bare `HEX`, which is key id 1.
/// `tessera pepper rotate` writes a new current key in front and keeps the older ones for
/// validation.
pub(crate) fn parse_keys(text: &str) -> Result<Vec<Pepper>, String> {
    let mut keys: Vec<Pepper> = Vec::new();
    for entry in text
        .split(['\n', ','])
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let (id, hex) = match entry.split_once(':') {
            Some((id, hex)) => (
                id.trim()
                    .parse::<u32>()
                    .map_err(|_| String::from("a key id must be a whole number, as in 2:HEX"))?,
                hex.trim(),
            ),
            None => (KEY_ID.0, entry),
        };
        let pepper = Pepper::from_hex(KeyId(id), hex).map_err(|e| e.to_string())?;
        if keys.iter().any(|k| k.id() == pepper.id()) {
            return Err(format!("key id {id} is given twice; give each key once"));
        }
        keys.push(pepper);
    }
    if keys.is_empty() {
        return Err(String::from("no key; expected 64 hex characters"));
    }
    Ok(keys)
}

/// The peppers of `keys` (current first) as the service takes them.
pub(crate) fn peppers_of(keys: Vec<Pepper>) -> Result<Peppers, String> {
    let mut it = keys.into_iter();
    let mut peppers = Peppers::new(it.next().ok_or("no key")?);
    for p in it {
        peppers = peppers.with_previous(p);
    }
    Ok(peppers)
}

/// Read a pepper's hex from a key file.
pub(crate) fn read_key_file(path: &Path) -> Result<Zeroizing<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CliError::failure(format!(
                "no pepper key file at {}; run `tessera init`, pass --key PATH, or set {PEPPER_ENV}",
                path.display()
            )));
        }
        Err(e) => {
            return Err(CliError::failure(format!(
                "cannot read the pepper key file {}: {e}; check its permissions",
                path.display()
            )));
        }
    };
    parse_keys(&text).map_err(|e| CliError::usage(format!("key file {}: {e}", path.display())))?;
    warn_if_readable_by_others(path);
    Ok(Zeroizing::new(text.trim().to_owned()))
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "warning: the pepper key file {} is readable by other users; run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

/// Write a new key file with mode 0600, never replacing one.
pub(crate) fn write_key_file(path: &Path, hex: &str) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let mut file = create_new_private(path).map_err(|e| {
        CliError::failure(format!(
            "cannot create the key file {}: {e}",
            path.display()
        ))
    })?;
    file.write_all(hex.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            CliError::failure(format!("cannot write the key file {}: {e}", path.display()))
        })
}

/// Create a directory (and its parents) readable by the owner only.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(|e| {
        CliError::failure(format!(
            "cannot create the directory {}: {e}",
            dir.display()
        ))
    })
}

/// Create a file that does not exist yet, readable by the owner only (for anything holding a
/// secret).
pub(crate) fn create_new_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// An opened store and what opening it did.
pub(crate) struct Opened {
    pub(crate) store: Arc<dyn Store>,
    /// The schema version before and after migrating.
    pub(crate) versions: (Option<i64>, i64),
}

/// Open the store, creating it when `create`, and apply pending migrations. A schema newer
/// than this build is refused by the backend.
pub(crate) async fn open_store(backend: &Backend, create: bool) -> Result<Opened> {
    match backend {
        Backend::Sqlite(path) => open_sqlite(path, create).await,
        Backend::Postgres(url, schema) => open_postgres(url, schema.as_deref(), create).await,
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(path: &Path, create: bool) -> Result<Opened> {
    use tessera_sql::SqliteStore;
    use tessera_sql::sqlite::SqliteConfig;
    if !create && !path.exists() {
        return Err(CliError::failure(format!(
            "no Tessera database at {}; run `tessera init` first, or pass --db PATH (or set TESSERA_DB)",
            path.display()
        )));
    }
    if create {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir)?;
        }
    }
    let store = SqliteStore::open_with(SqliteConfig::file(path).create_if_missing(create))
        .await
        .map_err(|e| CliError::failure(format!("{}: {e}", path.display())))?;
    let before = store.schema_version().await?;
    store.migrate().await?;
    Ok(Opened {
        store: Arc::new(store),
        versions: (before, SqliteStore::SCHEMA_VERSION),
    })
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(_: &Path, _: bool) -> Result<Opened> {
    Err(CliError::usage(
        "this build of tessera has no SQLite support; pass --database-url, or rebuild with the `sqlite` feature",
    ))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, schema: Option<&str>, create: bool) -> Result<Opened> {
    use tessera_sql::PostgresStore;
    use tessera_sql::postgres::PostgresConfig;
    let mut config = PostgresConfig::new(url);
    if let Some(s) = schema {
        config = config
            .schema(s)
            .map_err(|e| CliError::usage(format!("--database-schema: {e}")))?;
    }
    let store = PostgresStore::connect_with(config).await?;
    let before = store.schema_version().await?;
    if before.is_none() && !create {
        return Err(CliError::failure(
            "the PostgreSQL database has no Tessera tables (in this schema); run `tessera init` with the same --database-url first",
        ));
    }
    store.migrate().await?;
    Ok(Opened {
        store: Arc::new(store),
        versions: (before, PostgresStore::SCHEMA_VERSION),
    })
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_: &str, _: Option<&str>, _: bool) -> Result<Opened> {
    Err(CliError::usage(
        "this build of tessera has no PostgreSQL support; use SQLite (--db), or rebuild with the `postgres` feature",
    ))
}

/// Everything a command needs: the service, the peppers, who acts, and how to print.
pub(crate) struct Ctx {
    pub(crate) service: TokenService,
    /// The same peppers the service holds, for read-only lookups by digest.
    pub(crate) peppers: Peppers,
    pub(crate) principal: Principal,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) out: Out,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// The environment variable naming the access types application tokens may carry.
pub(crate) const ACCESS_TYPES_ENV: &str = "TESSERA_ACCESS_TYPES";

/// The offered access types from `TESSERA_ACCESS_TYPES` (comma-separated), if set; the
/// library's default (the seed's two) otherwise.
fn access_catalog() -> Result<Option<AccessCatalog>> {
    let Ok(v) = std::env::var(ACCESS_TYPES_ENV) else {
        return Ok(None);
    };
    let items: Vec<String> = v.split(',').map(str::to_owned).collect();
    let types = crate::parse::list(ACCESS_TYPES_ENV, &items)?
        .into_iter()
        .map(AccessType::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::usage(format!("{ACCESS_TYPES_ENV}: {e}")))?;
    AccessCatalog::new(types)
        .map(Some)
        .map_err(|e| CliError::usage(format!("{ACCESS_TYPES_ENV}: {e}")))
}

/// The acting principal from `--as` and `--admin`.
pub(crate) fn principal(g: &Global) -> Result<Principal> {
    let user = g
        .as_user
        .clone()
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| std::env::var("USERNAME").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| String::from("operator"));
    let p = if g.admin {
        Principal::admin(user)
    } else {
        Principal::user(user)
    };
    p.map_err(|e| CliError::usage(format!("--as: {e}")))
}

/// The clock: the system's, or the instant given by the hidden `--now`.
pub(crate) fn clock(g: &Global) -> Result<Arc<dyn Clock>> {
    match &g.now {
        Some(t) => {
            let at = OffsetDateTime::parse(t, &Rfc3339).map_err(|_| {
                CliError::usage("--now must be an RFC 3339 instant such as 2026-01-31T12:00:00Z")
            })?;
            Ok(Arc::new(ManualClock::new(at)))
        }
        None => Ok(Arc::new(SystemClock)),
    }
}

/// Environment variable: application tokens unused this long go dormant (default 30d).
pub(crate) const DORMANT_AFTER_ENV: &str = "TESSERA_DORMANT_AFTER";
/// Environment variable: application tokens unused this long are deleted (default 90d).
pub(crate) const DELETE_AFTER_ENV: &str = "TESSERA_DELETE_AFTER";

/// The inactivity thresholds from `TESSERA_DORMANT_AFTER` / `TESSERA_DELETE_AFTER`, if either is
/// set (the other keeps its default). Every command validates and shows application tokens by
/// them, so a use is refused at the moment it is made, whether or not a sweep ran.
fn inactivity_from_env() -> Result<Option<InactivityPolicy>> {
    let read = |name: &str| -> Result<Option<time::Duration>> {
        match std::env::var(name) {
            Ok(v) => crate::parse::duration(name, &v).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(CliError::usage(format!(
                "{name} is not valid text; write a duration such as 30d"
            ))),
        }
    };
    let (dormant, delete) = (read(DORMANT_AFTER_ENV)?, read(DELETE_AFTER_ENV)?);
    if dormant.is_none() && delete.is_none() {
        return Ok(None);
    }
    let default = InactivityPolicy::DEFAULT;
    InactivityPolicy::new(
        dormant.unwrap_or_else(|| default.dormant_after()),
        delete.unwrap_or_else(|| default.delete_after()),
    )
    .map(Some)
    .map_err(|_| {
        CliError::usage(format!(
            "{DORMANT_AFTER_ENV} must be above zero and below {DELETE_AFTER_ENV} (defaults 30d and 90d)"
        ))
    })
}

impl Ctx {
    /// Open the database and the pepper for a command.
    pub(crate) async fn open(g: &Global, inactivity: Option<InactivityPolicy>) -> Result<Self> {
        let backend = Backend::from_global(g)?;
        let hex = match pepper_from_env()? {
            Some(h) => h,
            None => read_key_file(&key_path(g, &backend)?)?,
        };
        let opened = open_store(&backend, false).await?;
        if let (Some(before), after) = opened.versions {
            if before < after {
                eprintln!("note: upgraded the database schema from version {before} to {after}");
            }
        }
        let keys = || {
            parse_keys(&hex)
                .and_then(peppers_of)
                .map_err(CliError::usage)
        };
        let clock = clock(g)?;
        // One command validates once at most: its use is audited as a row of its own (with its
        // address, endpoint or permission), written by the ledger's flush when the command ends.
        let mut builder = TokenService::builder_shared(opened.store, keys()?)
            .clock(clock.clone())
            .ledger(LedgerSettings::new().audit_each_use(true));
        if let Some(p) = inactivity.map_or_else(inactivity_from_env, |p| Ok(Some(p)))? {
            builder = builder.inactivity(p);
        }
        if let Some(c) = access_catalog()? {
            builder = builder.access_types(c);
        }
        Ok(Self {
            service: builder.build(),
            peppers: keys()?,
            principal: principal(g)?,
            clock,
            out: Out::new(g),
        })
    }

    /// Show a token just created, with its secret. When the secret cannot be shown (standard
    /// output closed, a broken pipe), the token is revoked at once, so that no live token
    /// whose secret nobody saw is left behind, and the error says so.
    pub(crate) async fn show_created(
        &self,
        what: &str,
        issued: &Issued,
        extra: &[(&str, serde_json::Value)],
    ) -> Result<()> {
        let Err(e) = self.out.issued(what, issued, extra) else {
            return Ok(());
        };
        let id = issued.token.id;
        let undone = match issued.token.kind {
            Kind::Auth => self.service.auth().revoke(id, &self.principal).await,
            _ => self.service.revoke(id, &self.principal).await,
        };
        Err(match undone {
            Ok(_) => CliError::failure(format!(
                "{e}; the new {what} {id} was revoked, since its secret was never shown; run the command again with standard output to a terminal or a file"
            )),
            Err(u) => CliError::failure(format!(
                "{e}; the new {what} {id} could not be revoked ({u}) and its secret was never shown: revoke it with `tessera revoke {id}`"
            )),
        })
    }

    /// Why an unknown token may be a wrong pepper rather than a wrong database: the database
    /// holds digests under key ids no configured pepper has, or a sealed secret under a
    /// configured key id does not open (another pepper under the same key id). `None` when
    /// nothing points at the pepper.
    pub(crate) async fn pepper_doubt(&self) -> Result<Option<String>> {
        let ours: Vec<KeyId> = self.peppers.all().map(Pepper::id).collect();
        let mut foreign = std::collections::BTreeSet::new();
        let mut broken = None;
        let mut tried = 0;
        let now = self.now();
        for r in self.store().list(&TokenFilter::default()).await? {
            // Only tokens that could still be presented and accepted say anything.
            if matches!(
                r.summary(now).state,
                tessera::core::lifecycle::State::Revoked
                    | tessera::core::lifecycle::State::Deleted
                    | tessera::core::lifecycle::State::RotatedOut
                    | tessera::core::lifecycle::State::Expired
                    | tessera::core::lifecycle::State::Exhausted
            ) {
                continue;
            }
            let key = r.digest.key();
            if !ours.contains(&key) {
                foreign.insert(key.0);
            }
            if let Some(sealed) = r.sealed.as_ref().filter(|s| ours.contains(&s.key())) {
                if broken.is_none() && tried < 8 {
                    tried += 1;
                    if let Err(tessera::core::Error::SealBroken { key }) =
                        self.peppers.open(r.id, sealed)
                    {
                        broken = Some(key.0);
                    }
                }
            }
        }
        let ours: Vec<String> = ours.iter().map(|k| k.0.to_string()).collect();
        let ours = ours.join(", ");
        if let Some(k) = broken {
            return Ok(Some(format!(
                "the pepper may be wrong: a secret sealed under key id {k} does not open with the configured pepper of that id; check TESSERA_PEPPER or the key file (--key) before --db"
            )));
        }
        if foreign.is_empty() {
            return Ok(None);
        }
        let foreign: Vec<String> = foreign.iter().map(ToString::to_string).collect();
        Ok(Some(format!(
            "the token is not in this database, or the pepper may be wrong: the database holds digests under key id(s) {} while the configured pepper(s) have key id(s) {ours}; check TESSERA_PEPPER or the key file (--key), then --db",
            foreign.join(", ")
        )))
    }

    /// The current time, from the service's clock.
    pub(crate) fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// The store.
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        self.service.store()
    }

    /// A token id from its 32 hex digits or a unique prefix of at least 6.
    pub(crate) async fn resolve_id(&self, text: &str) -> Result<TokenId> {
        let t = text.trim().to_ascii_lowercase();
        if t.len() == 32 {
            return TokenId::parse(&t).map_err(|e| CliError::usage(e.to_string()));
        }
        if t.len() < 6 || t.len() > 32 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            // Not echoed: it may be a token pasted where its id belongs.
            return Err(CliError::usage(
                "that is not a token id: give its 32 hex digits or a unique prefix of at least 6 (a token's id, not the token itself); list tokens with `tessera list`",
            ));
        }
        let ids: Vec<TokenId> = self
            .store()
            .list(&TokenFilter::default())
            .await?
            .into_iter()
            .map(|r| r.id)
            .filter(|id| id.to_string().starts_with(&t))
            .collect();
        match ids.as_slice() {
            [id] => Ok(*id),
            [] => Err(CliError::not_found(format!(
                "no token id starts with {t}; list tokens with `tessera list`"
            ))),
            _ => Err(CliError::usage(format!(
                "{} token ids start with {t}; give more digits",
                ids.len()
            ))),
        }
    }

    /// The stored record of a token id.
    pub(crate) async fn record(&self, id: TokenId) -> Result<TokenRecord> {
        self.store().get(id).await?.ok_or_else(|| {
            CliError::not_found(format!(
                "no token with id {id}; list tokens with `tessera list`"
            ))
        })
    }

    /// The record a presented token digests to under any configured pepper, if any.
    pub(crate) async fn find_presented(
        &self,
        presented: &Presented<'_>,
    ) -> Result<Option<TokenRecord>> {
        for digest in self.peppers.candidates(presented) {
            if let Some(r) = self.store().find_by_digest(&digest).await? {
                if r.kind() == presented.kind() {
                    return Ok(Some(r));
                }
                return Ok(None);
            }
        }
        Ok(None)
    }
}

/// Parse token text of any kind and spelling: prefixed, the plain 64-character endpoint form,
/// or an onboarding short code.
pub(crate) fn parse_any_spelling(text: &str) -> Result<Presented<'_>, tessera::core::FormatError> {
    use tessera::Kind;
    if text.starts_with("tsr_") {
        format::parse_any(text)
    } else if text.len() == 64 && text.bytes().all(|b| b.is_ascii_alphanumeric()) {
        format::parse(Kind::Endpoint, text)
    } else if text.bytes().filter(|b| *b != b'-').count() == 28 {
        // 26 data and 2 check characters, dashes aside: an onboarding short code.
        format::parse(Kind::Onboarding, text)
    } else {
        format::parse_any(text)
    }
}

/// A token from the argument, or else the first non-empty line of standard input.
/// A token given as an argument or piped on standard input, or `None` when there is none (no
/// argument, and standard input is a terminal or empty): no prompt.
pub(crate) fn read_token_if_given(arg: Option<String>) -> Result<Option<Zeroizing<String>>> {
    if let Some(t) = arg {
        return Ok(Some(Zeroizing::new(t.trim().to_owned())));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let mut buf = Zeroizing::new(String::new());
    stdin
        .lock()
        .take(64 * 1024)
        .read_to_string(&mut buf)
        .map_err(|e| CliError::usage(format!("cannot read the token from standard input: {e}")))?;
    Ok(buf
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| Zeroizing::new(l.to_owned())))
}

pub(crate) fn read_token(arg: Option<String>) -> Result<Zeroizing<String>> {
    if let Some(t) = arg {
        return Ok(Zeroizing::new(t.trim().to_owned()));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("paste the token and press Enter: ");
    }
    let mut buf = Zeroizing::new(String::new());
    let read = if stdin.is_terminal() {
        stdin.lock().read_line(&mut buf)
    } else {
        stdin.lock().take(64 * 1024).read_to_string(&mut buf)
    };
    read.map_err(|e| CliError::usage(format!("cannot read the token from standard input: {e}")))?;
    let line = buf
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    if line.is_empty() {
        return Err(CliError::usage(
            "no token given; pass it as an argument or on standard input",
        ));
    }
    Ok(Zeroizing::new(line.to_owned()))
}
