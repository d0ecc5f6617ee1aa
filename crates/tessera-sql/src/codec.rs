//! How Tessera values are spelled in SQL columns, the same for both backends.
//!
//! Times are `BIGINT` nanoseconds since the Unix epoch (UTC), which covers the years 1677 to
//! 2262 at full precision; counts are `BIGINT`; ids are their 32-hex-digit text; a digest is its
//! key id and its 32 bytes; a sealed secret is its opaque [`Sealed::to_bytes`]. Kind data is JSON, with the columns listings filter on copied out
//! beside it. Nothing here ever sees a secret in the clear.

use std::net::IpAddr;
use std::num::NonZeroU64;

use tessera_core::Kind;
use tessera_core::audit::{Actor, AuditEvent};
use tessera_core::digest::{Digest, Hint, KeyId};
use tessera_core::format::Spelling;
use tessera_core::id::{DeviceId, EndpointId, TokenId, UserId};
use tessera_core::kind::KindData;
use tessera_core::kind::endpoint::{EndpointData, Mapping, Method};
use tessera_core::kind::onboarding::{DeviceBinding, UsageLimit};
use tessera_core::lifecycle::State;
use tessera_core::record::TokenRecord;
use tessera_core::seal::Sealed;
use tessera_store::{BatchId, Enrollment, SharedRecord, StoreError, UsageEntry, UsageSubject};
use time::{Duration, OffsetDateTime};

use crate::error::out_of_range;

/// A result row as each driver reads it: by position (SQLite, where the statements list their
/// columns in the order given below) or by name (PostgreSQL). A value that cannot be read is
/// `Corrupt`.
pub(crate) trait Cols {
    /// A text column.
    fn text(&self, i: usize, name: &'static str) -> Result<String, StoreError>;
    /// A nullable text column.
    fn opt_text(&self, i: usize, name: &'static str) -> Result<Option<String>, StoreError>;
    /// An integer column.
    fn int(&self, i: usize, name: &'static str) -> Result<i64, StoreError>;
    /// A nullable integer column.
    fn opt_int(&self, i: usize, name: &'static str) -> Result<Option<i64>, StoreError>;
    /// A blob column.
    fn blob(&self, i: usize, name: &'static str) -> Result<Vec<u8>, StoreError>;
    /// A nullable blob column.
    fn opt_blob(&self, i: usize, name: &'static str) -> Result<Option<Vec<u8>>, StoreError>;
    /// A boolean column.
    fn boolean(&self, i: usize, name: &'static str) -> Result<bool, StoreError>;
}

#[cfg(feature = "postgres")]
impl Cols for sqlx::postgres::PgRow {
    fn text(&self, _: usize, name: &'static str) -> Result<String, StoreError> {
        pg_col(self, name)
    }
    fn opt_text(&self, _: usize, name: &'static str) -> Result<Option<String>, StoreError> {
        pg_col(self, name)
    }
    fn int(&self, _: usize, name: &'static str) -> Result<i64, StoreError> {
        pg_col(self, name)
    }
    fn opt_int(&self, _: usize, name: &'static str) -> Result<Option<i64>, StoreError> {
        pg_col(self, name)
    }
    fn blob(&self, _: usize, name: &'static str) -> Result<Vec<u8>, StoreError> {
        pg_col(self, name)
    }
    fn opt_blob(&self, _: usize, name: &'static str) -> Result<Option<Vec<u8>>, StoreError> {
        pg_col(self, name)
    }
    fn boolean(&self, _: usize, name: &'static str) -> Result<bool, StoreError> {
        pg_col(self, name)
    }
}

#[cfg(feature = "postgres")]
fn pg_col<'r, T>(row: &'r sqlx::postgres::PgRow, name: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    use sqlx::Row;
    row.try_get(name)
        .map_err(|e| crate::error::map_sqlx_error(e, "token"))
}

#[cfg(feature = "sqlite")]
impl Cols for rusqlite::Row<'_> {
    fn text(&self, i: usize, name: &'static str) -> Result<String, StoreError> {
        lite_col(self, i, name)
    }
    fn opt_text(&self, i: usize, name: &'static str) -> Result<Option<String>, StoreError> {
        lite_col(self, i, name)
    }
    fn int(&self, i: usize, name: &'static str) -> Result<i64, StoreError> {
        lite_col(self, i, name)
    }
    fn opt_int(&self, i: usize, name: &'static str) -> Result<Option<i64>, StoreError> {
        lite_col(self, i, name)
    }
    fn blob(&self, i: usize, name: &'static str) -> Result<Vec<u8>, StoreError> {
        lite_col(self, i, name)
    }
    fn opt_blob(&self, i: usize, name: &'static str) -> Result<Option<Vec<u8>>, StoreError> {
        lite_col(self, i, name)
    }
    fn boolean(&self, i: usize, name: &'static str) -> Result<bool, StoreError> {
        lite_col(self, i, name)
    }
}

#[cfg(feature = "sqlite")]
fn lite_col<T: rusqlite::types::FromSql>(
    row: &rusqlite::Row<'_>,
    i: usize,
    name: &'static str,
) -> Result<T, StoreError> {
    row.get(i)
        .map_err(|e| StoreError::Corrupt(format!("column {name}: {e}")))
}

/// The columns of `tokens` every record query returns, in [`RawRecord`] order.
macro_rules! record_columns {
    () => {
        "id, kind, digest_key, digest, spelling, hint, state, created_at, created_by, \
         generated_by, expires_at, last_used_at, activated_at, grace_until, successor, max_uses, \
         uses, binding, bound_device, data, sealed"
    };
}
pub(crate) use record_columns;

/// The columns of `token_usage` every usage query returns.
macro_rules! usage_columns {
    () => {
        "token_id, subject_kind, subject, method, first_seen, last_seen, hits, blocked"
    };
}
pub(crate) use usage_columns;

/// A time as stored.
pub(crate) fn ts(t: OffsetDateTime) -> Result<i64, StoreError> {
    i64::try_from(t.unix_timestamp_nanos()).map_err(|_| {
        out_of_range(
            "timestamp",
            "times must fall between the years 1677 and 2262",
        )
    })
}

/// An optional time as stored.
pub(crate) fn ts_opt(t: Option<OffsetDateTime>) -> Result<Option<i64>, StoreError> {
    t.map(ts).transpose()
}

/// A time as stored, saturating at the ends of the storable range (for filter bounds).
pub(crate) fn ts_saturating(t: OffsetDateTime) -> i64 {
    let n = t.unix_timestamp_nanos();
    i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
}

/// `now - interval` as stored, saturating at the oldest storable time.
pub(crate) fn ts_before(now: OffsetDateTime, interval: Duration) -> i64 {
    now.checked_sub(interval)
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos()).ok())
        .unwrap_or(i64::MIN)
}

/// A stored time.
pub(crate) fn from_ts(n: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(n))
        .map_err(|_| StoreError::Corrupt(format!("timestamp {n} is out of range")))
}

fn from_ts_opt(n: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    n.map(from_ts).transpose()
}

/// A count as stored.
pub(crate) fn count(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| out_of_range("use count", "counts must stay below 2^63"))
}

fn from_count(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{what} {n} is negative")))
}

/// A token id as stored.
pub(crate) fn id(id: TokenId) -> String {
    id.to_string()
}

fn from_id(s: &str) -> Result<TokenId, StoreError> {
    TokenId::parse(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn corrupt(what: &str, e: impl core::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// A digest as stored: key id and bytes.
pub(crate) fn digest(d: &Digest) -> (i64, Vec<u8>) {
    (i64::from(d.key().0), d.as_bytes().to_vec())
}

fn from_digest(key: i64, bytes: &[u8]) -> Result<Digest, StoreError> {
    let key = u32::try_from(key).map_err(|_| corrupt("digest key id", key))?;
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(String::from("a stored digest is not 32 bytes")))?;
    Ok(Digest::from_parts(KeyId(key), bytes))
}

/// A spelling as stored.
pub(crate) const fn spelling(s: Spelling) -> &'static str {
    match s {
        Spelling::Prefixed => "prefixed",
        Spelling::Plain64 => "plain64",
        Spelling::ShortCode => "short_code",
    }
}

fn from_spelling(s: &str) -> Result<Spelling, StoreError> {
    match s {
        "prefixed" => Ok(Spelling::Prefixed),
        "plain64" => Ok(Spelling::Plain64),
        "short_code" => Ok(Spelling::ShortCode),
        other => Err(corrupt("unknown spelling", other)),
    }
}

/// JSON for a value stored in a text column.
pub(crate) fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(Box::new(e)))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

/// A method as stored.
pub(crate) const fn method(m: Method) -> &'static str {
    m.as_str()
}

fn from_method(s: &str) -> Result<Method, StoreError> {
    Method::parse(s).ok_or_else(|| corrupt("unknown method", s))
}

/// The columns copied out of a record's kind data, for filters, constraints and atomic
/// redemption.
#[derive(Debug, Default)]
pub(crate) struct DataColumns {
    /// The key of a unique name ([`tessera_store::names::name_key`]: an application token's
    /// name lowercased, an auth token's owner and name), unique among tokens in force by a
    /// partial index. The column is still called `app_name`.
    pub(crate) app_name: Option<String>,
    /// An auth token's owner.
    pub(crate) owner: Option<String>,
    /// An endpoint primary's endpoint.
    pub(crate) endpoint: Option<String>,
    /// An endpoint primary's method.
    pub(crate) method: Option<&'static str>,
    /// An onboarding token's binding mode: `any`, `device` or `first_device`.
    pub(crate) binding: Option<&'static str>,
    /// The device an onboarding token is bound to, if any.
    pub(crate) bound_device: Option<String>,
    /// The kind data as JSON.
    pub(crate) data: String,
}

impl DataColumns {
    pub(crate) fn of(data: &KindData) -> Result<Self, StoreError> {
        let mut c = Self {
            data: json(data)?,
            ..Self::default()
        };
        c.app_name = tessera_store::names::name_key(data);
        match data {
            KindData::Application(_) => {}
            KindData::Auth(a) => c.owner = Some(a.owner.as_str().to_owned()),
            KindData::Endpoint(EndpointData::Primary {
                endpoint,
                method: m,
            }) => {
                c.endpoint = Some(endpoint.as_str().to_owned());
                c.method = Some(method(*m));
            }
            KindData::Onboarding(o) => {
                let (mode, device) = match &o.binding {
                    DeviceBinding::Any => ("any", None),
                    DeviceBinding::Device(d) => ("device", Some(d)),
                    DeviceBinding::FirstDevice(d) => ("first_device", d.as_ref()),
                };
                c.binding = Some(mode);
                c.bound_device = device.map(|d| d.as_str().to_owned());
            }
            KindData::Deployment(_) | KindData::Endpoint(EndpointData::Secondary { .. }) => {}
        }
        Ok(c)
    }
}

/// Every column of a record, ready to bind.
#[derive(Debug)]
pub(crate) struct RecordColumns {
    pub(crate) id: String,
    pub(crate) kind: &'static str,
    pub(crate) digest_key: i64,
    pub(crate) digest: Vec<u8>,
    pub(crate) spelling: &'static str,
    pub(crate) hint: String,
    pub(crate) state: &'static str,
    pub(crate) created_at: i64,
    pub(crate) created_by: String,
    pub(crate) generated_by: Option<String>,
    pub(crate) expires_at: Option<i64>,
    pub(crate) last_used_at: Option<i64>,
    pub(crate) activated_at: i64,
    pub(crate) grace_until: Option<i64>,
    pub(crate) successor: Option<String>,
    pub(crate) max_uses: Option<i64>,
    pub(crate) uses: i64,
    pub(crate) data: DataColumns,
    pub(crate) sealed: Option<Vec<u8>>,
}

impl RecordColumns {
    pub(crate) fn of(r: &TokenRecord) -> Result<Self, StoreError> {
        let (digest_key, digest) = digest(&r.digest);
        Ok(Self {
            id: id(r.id),
            kind: r.kind().as_str(),
            digest_key,
            digest,
            spelling: spelling(r.spelling),
            hint: r.hint.as_str().to_owned(),
            state: r.state.as_str(),
            created_at: ts(r.created_at)?,
            created_by: json(&r.created_by)?,
            generated_by: r.generated_by.as_ref().map(|u| u.as_str().to_owned()),
            expires_at: ts_opt(r.expires_at)?,
            last_used_at: ts_opt(r.last_used_at)?,
            activated_at: ts(r.activated_at)?,
            grace_until: ts_opt(r.grace_until)?,
            successor: r.successor.map(id),
            max_uses: r.limit.max().map(count).transpose()?,
            uses: count(r.uses)?,
            data: DataColumns::of(&r.data)?,
            sealed: r.sealed.as_ref().map(Sealed::to_bytes),
        })
    }
}

/// A `tokens` row as read, before its values are checked: its text and blobs owned (`String`,
/// `Vec<u8>`), or borrowed from the driver's row (`&str`, `&[u8]`: SQLite, no copy).
#[derive(Debug)]
pub(crate) struct RawRecord<S = String, B = Vec<u8>> {
    id: S,
    kind: S,
    digest_key: i64,
    digest: B,
    spelling: S,
    hint: S,
    state: S,
    created_at: i64,
    created_by: S,
    generated_by: Option<S>,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    activated_at: i64,
    grace_until: Option<i64>,
    successor: Option<S>,
    max_uses: Option<i64>,
    uses: i64,
    binding: Option<S>,
    bound_device: Option<S>,
    data: S,
    sealed: Option<B>,
}

#[cfg(feature = "sqlite")]
impl<'r> RawRecord<&'r str, &'r [u8]> {
    /// Read the [`record_columns!`] of a SQLite row without copying its text or blobs.
    pub(crate) fn from_lite_row(row: &'r rusqlite::Row<'_>) -> Result<Self, StoreError> {
        use rusqlite::types::ValueRef;
        let bad = |name: &str, e: &dyn core::fmt::Display| {
            StoreError::Corrupt(format!("column {name}: {e}"))
        };
        let value = |i: usize, name: &'static str| row.get_ref(i).map_err(|e| bad(name, &e));
        let opt_text = |i, name| match value(i, name)? {
            ValueRef::Null => Ok(None),
            v => v.as_str().map(Some).map_err(|e| bad(name, &e)),
        };
        let text = |i, name| value(i, name)?.as_str().map_err(|e| bad(name, &e));
        let blob = |i, name| value(i, name)?.as_blob().map_err(|e| bad(name, &e));
        let opt_blob = |i, name| value(i, name)?.as_blob_or_null().map_err(|e| bad(name, &e));
        Ok(Self {
            id: text(0, "id")?,
            kind: text(1, "kind")?,
            digest_key: row.int(2, "digest_key")?,
            digest: blob(3, "digest")?,
            spelling: text(4, "spelling")?,
            hint: text(5, "hint")?,
            state: text(6, "state")?,
            created_at: row.int(7, "created_at")?,
            created_by: text(8, "created_by")?,
            generated_by: opt_text(9, "generated_by")?,
            expires_at: row.opt_int(10, "expires_at")?,
            last_used_at: row.opt_int(11, "last_used_at")?,
            activated_at: row.int(12, "activated_at")?,
            grace_until: row.opt_int(13, "grace_until")?,
            successor: opt_text(14, "successor")?,
            max_uses: row.opt_int(15, "max_uses")?,
            uses: row.int(16, "uses")?,
            binding: opt_text(17, "binding")?,
            bound_device: opt_text(18, "bound_device")?,
            data: text(19, "data")?,
            sealed: opt_blob(20, "sealed")?,
        })
    }
}

impl RawRecord {
    /// Read the [`record_columns!`] of a row.
    pub(crate) fn from_row(row: &impl Cols) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.text(0, "id")?,
            kind: row.text(1, "kind")?,
            digest_key: row.int(2, "digest_key")?,
            digest: row.blob(3, "digest")?,
            spelling: row.text(4, "spelling")?,
            hint: row.text(5, "hint")?,
            state: row.text(6, "state")?,
            created_at: row.int(7, "created_at")?,
            created_by: row.text(8, "created_by")?,
            generated_by: row.opt_text(9, "generated_by")?,
            expires_at: row.opt_int(10, "expires_at")?,
            last_used_at: row.opt_int(11, "last_used_at")?,
            activated_at: row.int(12, "activated_at")?,
            grace_until: row.opt_int(13, "grace_until")?,
            successor: row.opt_text(14, "successor")?,
            max_uses: row.opt_int(15, "max_uses")?,
            uses: row.int(16, "uses")?,
            binding: row.opt_text(17, "binding")?,
            bound_device: row.opt_text(18, "bound_device")?,
            data: row.text(19, "data")?,
            sealed: row.opt_blob(20, "sealed")?,
        })
    }
}

impl<S: AsRef<str>, B: AsRef<[u8]>> RawRecord<S, B> {
    /// Check every value and build the record.
    pub(crate) fn into_record(self) -> Result<TokenRecord, StoreError> {
        let kind_text = self.kind.as_ref();
        let kind = Kind::parse(kind_text).ok_or_else(|| corrupt("unknown kind", kind_text))?;
        let mut data = kind_data(kind, self.data.as_ref())?;
        if data.kind() != kind {
            return Err(StoreError::Corrupt(format!(
                "token {} is stored as {kind} but its data is {}",
                self.id.as_ref(),
                data.kind()
            )));
        }
        // The binding columns are the truth: redemption binds a first device there, atomically.
        if let KindData::Onboarding(o) = &mut data {
            let device = self
                .bound_device
                .as_ref()
                .map(|d| DeviceId::parse(d.as_ref()))
                .transpose()
                .map_err(|e| corrupt("bound device", e))?;
            o.binding = match (self.binding.as_ref().map(AsRef::as_ref), device) {
                (Some("any"), _) => DeviceBinding::Any,
                (Some("device"), Some(d)) => DeviceBinding::Device(d),
                (Some("first_device"), d) => DeviceBinding::FirstDevice(d),
                _ => {
                    return Err(StoreError::Corrupt(String::from(
                        "onboarding binding is malformed",
                    )));
                }
            };
        }
        let limit = match self.max_uses {
            None => UsageLimit::Unlimited,
            Some(n) => UsageLimit::Limited(
                NonZeroU64::new(from_count(n, "usage limit")?)
                    .ok_or_else(|| StoreError::Corrupt(String::from("usage limit is zero")))?,
            ),
        };
        Ok(TokenRecord {
            id: from_id(self.id.as_ref())?,
            digest: from_digest(self.digest_key, self.digest.as_ref())?,
            spelling: from_spelling(self.spelling.as_ref())?,
            hint: Hint::from_stored(self.hint.as_ref()).map_err(|e| corrupt("hint", e))?,
            sealed: self
                .sealed
                .as_ref()
                .map(|b| Sealed::from_bytes(b.as_ref()))
                .transpose()
                .map_err(|e| corrupt("sealed secret", e))?,
            state: State::parse(self.state.as_ref())
                .ok_or_else(|| corrupt("unknown state", self.state.as_ref()))?,
            created_at: from_ts(self.created_at)?,
            created_by: from_json::<Actor>("creator", self.created_by.as_ref())?,
            generated_by: self
                .generated_by
                .as_ref()
                .map(|u| UserId::parse(u.as_ref()))
                .transpose()
                .map_err(|e| corrupt("generated by", e))?,
            expires_at: from_ts_opt(self.expires_at)?,
            last_used_at: from_ts_opt(self.last_used_at)?,
            activated_at: from_ts(self.activated_at)?,
            grace_until: from_ts_opt(self.grace_until)?,
            successor: self
                .successor
                .as_ref()
                .map(|t| from_id(t.as_ref()))
                .transpose()?,
            limit,
            uses: from_count(self.uses, "use count")?,
            data,
        })
    }
}

/// Kind data stored as JSON for a record whose `kind` column says `kind`.
///
/// This build writes the tag first (`{"kind":"deployment",...}`): when it is there and names
/// `kind`, the kind's own fields are read directly (the generic reader of a tagged enum first
/// copies every value into a buffer to find the tag, which costs the validation lookup more
/// than the rest of the row's decoding). Anything else is read by the generic reader, whose
/// tag the caller checks against the column.
fn kind_data(kind: Kind, json: &str) -> Result<KindData, StoreError> {
    let tagged = json
        .strip_prefix("{\"kind\":\"")
        .and_then(|rest| rest.strip_prefix(kind.as_str()))
        .is_some_and(|rest| rest.starts_with('"'));
    if !tagged {
        return from_json("kind data", json);
    }
    Ok(match kind {
        Kind::Deployment => KindData::Deployment(from_json("kind data", json)?),
        Kind::Onboarding => KindData::Onboarding(from_json("kind data", json)?),
        Kind::Endpoint => KindData::Endpoint(from_json("kind data", json)?),
        Kind::Auth => KindData::Auth(from_json("kind data", json)?),
        Kind::Application => KindData::Application(from_json("kind data", json)?),
    })
}

/// Read a record from a row of [`record_columns!`].
pub(crate) fn record(row: &impl Cols) -> Result<TokenRecord, StoreError> {
    RawRecord::from_row(row)?.into_record()
}

/// Read a shared record from a row of [`record_columns!`] and `blocked`, the blocked addresses
/// separated by spaces (or NULL).
#[cfg(feature = "postgres")]
pub(crate) fn shared_record(row: &impl Cols) -> Result<SharedRecord, StoreError> {
    let record = RawRecord::from_row(row)?.into_record()?;
    with_blocked(record, row.opt_text(21, "blocked")?.as_deref())
}

/// [`shared_record`] for a SQLite row, read without copying its text (the validation lookup).
#[cfg(feature = "sqlite")]
pub(crate) fn lite_shared_record(row: &rusqlite::Row<'_>) -> Result<SharedRecord, StoreError> {
    let record = RawRecord::from_lite_row(row)?.into_record()?;
    let blocked = row
        .get_ref(21)
        .and_then(|v| v.as_str_or_null().map_err(Into::into))
        .map_err(|e| StoreError::Corrupt(format!("column blocked: {e}")))?;
    with_blocked(record, blocked)
}

/// `record` with its blocked addresses, separated by spaces.
fn with_blocked(record: TokenRecord, blocked: Option<&str>) -> Result<SharedRecord, StoreError> {
    let blocked = blocked
        .unwrap_or("")
        .split_ascii_whitespace()
        .map(|a| {
            a.parse::<IpAddr>()
                .map_err(|e| corrupt("blocked address", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SharedRecord::new(record, blocked))
}

/// A ledger batch id as stored: 32 hexadecimal digits.
pub(crate) fn batch_id(id: BatchId) -> String {
    format!("{:032x}", id.0)
}

/// A usage subject as stored: kind, subject text, method (empty for addresses).
pub(crate) fn subject(s: &UsageSubject) -> (&'static str, String, &'static str) {
    match s {
        UsageSubject::Ip(ip) => ("ip", ip.to_string(), ""),
        UsageSubject::Endpoint(e, m) => ("endpoint", e.as_str().to_owned(), method(*m)),
    }
}

/// Read a usage entry from a row of [`usage_columns!`].
pub(crate) fn usage_entry(row: &impl Cols) -> Result<UsageEntry, StoreError> {
    let token = row.text(0, "token_id")?;
    let kind = row.text(1, "subject_kind")?;
    let subject = row.text(2, "subject")?;
    let m = row.text(3, "method")?;
    let subject = match kind.as_str() {
        "ip" => UsageSubject::Ip(
            subject
                .parse::<IpAddr>()
                .map_err(|e| corrupt("usage address", e))?,
        ),
        "endpoint" => UsageSubject::Endpoint(
            EndpointId::parse(subject).map_err(|e| corrupt("usage endpoint", e))?,
            from_method(&m)?,
        ),
        other => return Err(corrupt("unknown usage subject", other)),
    };
    Ok(UsageEntry {
        token: from_id(&token)?,
        subject,
        first_seen: from_ts_opt(row.opt_int(4, "first_seen")?)?,
        last_seen: from_ts_opt(row.opt_int(5, "last_seen")?)?,
        count: from_count(row.int(6, "hits")?, "usage count")?,
        blocked: row.boolean(7, "blocked")?,
    })
}

/// Read a mapping from a row of `secondary, endpoint, method, enabled`.
pub(crate) fn mapping(row: &impl Cols) -> Result<Mapping, StoreError> {
    let secondary = row.text(0, "secondary")?;
    let endpoint = row.text(1, "endpoint")?;
    let m = row.text(2, "method")?;
    Ok(Mapping {
        secondary: from_id(&secondary)?,
        endpoint: EndpointId::parse(endpoint).map_err(|e| corrupt("mapping endpoint", e))?,
        method: from_method(&m)?,
        enabled: row.boolean(3, "enabled")?,
    })
}

/// Read an enrollment from a row of `device, at`.
pub(crate) fn enrollment(row: &impl Cols) -> Result<Enrollment, StoreError> {
    let device = row.text(0, "device")?;
    Ok(Enrollment {
        device: DeviceId::parse(device).map_err(|e| corrupt("enrolled device", e))?,
        at: from_ts(row.int(1, "at")?)?,
    })
}

/// Read a token's enrollment (device, at, token id).
pub(crate) fn token_enrollment(row: &impl Cols) -> Result<(TokenId, Enrollment), StoreError> {
    Ok((from_id(&row.text(2, "token_id")?)?, enrollment(row)?))
}

/// Enrollments of many tokens read in token order, put back in the order of `ids`.
pub(crate) fn in_order_of(
    ids: &[TokenId],
    mut rows: Vec<(TokenId, Enrollment)>,
) -> Vec<(TokenId, Enrollment)> {
    // Stable: each token's enrollments keep their order (oldest first).
    let rank: std::collections::HashMap<TokenId, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i))
        .rev()
        .collect();
    rows.sort_by_key(|(id, _)| rank.get(id).copied().unwrap_or(usize::MAX));
    rows
}

/// Read an audit event from its stored body.
pub(crate) fn event(body: &str) -> Result<AuditEvent, StoreError> {
    from_json("audit event", body)
}

/// The columns an audit event is filtered on: time, token, actor.
pub(crate) fn event_columns(
    e: &AuditEvent,
) -> Result<(i64, Option<String>, String, String), StoreError> {
    Ok((
        ts(e.at)?,
        e.subject.token.map(id),
        json(&e.actor)?,
        json(e)?,
    ))
}

/// An actor as stored, for filtering.
pub(crate) fn actor(a: &Actor) -> Result<String, StoreError> {
    json(a)
}

/// A state list as a JSON array of stored names (for SQLite's `json_each`).
#[cfg(feature = "sqlite")]
pub(crate) fn states_json(states: &[State]) -> Result<String, StoreError> {
    json(&states.iter().map(|s| s.as_str()).collect::<Vec<_>>())
}

/// What a record that failed to insert collided with among the records of its batch inserted
/// before it; its unique name when neither id nor digest matches.
pub(crate) fn batch_collision(r: &TokenRecord, before: &[TokenRecord]) -> &'static str {
    if before.iter().any(|b| b.id == r.id) {
        "token id"
    } else if before.iter().any(|b| b.digest == r.digest) {
        "token digest"
    } else {
        tessera_store::names::taken(r.kind())
    }
}

/// Usage entries in a stable order: by token, then by subject.
pub(crate) fn sorted_usage(mut entries: Vec<UsageEntry>) -> Result<Vec<UsageEntry>, StoreError> {
    entries.sort_by(|a, b| (a.token, &a.subject).cmp(&(b.token, &b.subject)));
    Ok(entries)
}

/// Mappings in a stable order: by secondary, endpoint and method.
pub(crate) fn sorted_mappings(mut mappings: Vec<Mapping>) -> Vec<Mapping> {
    mappings.sort_by(|a, b| {
        (a.secondary, &a.endpoint, a.method).cmp(&(b.secondary, &b.endpoint, b.method))
    });
    mappings
}

/// An optional row limit as stored: everything when absent.
pub(crate) fn limit(l: Option<usize>) -> i64 {
    l.map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_at_full_precision() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_790_000_000_123_456_789).unwrap();
        assert_eq!(from_ts(ts(t).unwrap()).unwrap(), t);
        let far = OffsetDateTime::from_unix_timestamp(i64::from(i32::MAX) * 10).unwrap();
        assert!(ts(far).is_err());
        assert_eq!(ts_before(t, Duration::MAX), i64::MIN);
    }

    #[test]
    fn counts_refuse_what_sql_cannot_hold() {
        assert_eq!(count(7).unwrap(), 7);
        assert!(count(u64::MAX).is_err());
        assert!(from_count(-1, "uses").is_err());
    }

    #[test]
    fn kind_data_read_directly_matches_the_generic_reader() {
        use tessera_core::id::{
            AccessType, ApplicationName, Description, Permission, TokenName, UserId,
        };
        use tessera_core::kind::application::{AccessTypes, ApplicationData};
        use tessera_core::kind::auth::{AuthData, Scope};
        use tessera_core::kind::deployment::DeploymentData;
        let name = || TokenName::parse("n").unwrap();
        let samples = [
            KindData::Deployment(DeploymentData {
                name: name(),
                auto_renew: true,
            }),
            KindData::Endpoint(EndpointData::Primary {
                endpoint: EndpointId::parse("/e").unwrap(),
                method: Method::Post,
            }),
            KindData::Endpoint(EndpointData::Secondary {
                name: name(),
                description: Description::parse("d").unwrap(),
                enabled: false,
            }),
            KindData::Auth(AuthData {
                owner: UserId::parse("u").unwrap(),
                name: name(),
                scope: Scope::new([Permission::parse("p").unwrap()]).unwrap(),
            }),
            KindData::Application(ApplicationData {
                name: ApplicationName::parse("a").unwrap(),
                description: Description::default(),
                access: AccessTypes::new([AccessType::parse("t").unwrap()]).unwrap(),
            }),
        ];
        for data in &samples {
            let stored = json(data).unwrap();
            let tag = format!("{{\"kind\":\"{}\"", data.kind().as_str());
            assert!(stored.starts_with(&tag), "{stored}");
            assert_eq!(&kind_data(data.kind(), &stored).unwrap(), data);
            // Spelled otherwise (spaces), the generic reader reads it the same.
            let spaced = stored.replacen(':', ": ", 1);
            assert_eq!(&kind_data(data.kind(), &spaced).unwrap(), data);
        }
        // A tag naming another kind is read as what it says, for the caller to refuse.
        let stored = json(&samples[0]).unwrap();
        assert_eq!(
            kind_data(Kind::Auth, &stored).unwrap().kind(),
            Kind::Deployment
        );
        assert!(kind_data(Kind::Auth, "{\"kind\":\"auth\"}").is_err());
    }

    #[test]
    fn spellings_round_trip() {
        for s in [Spelling::Prefixed, Spelling::Plain64, Spelling::ShortCode] {
            assert_eq!(from_spelling(spelling(s)).unwrap(), s);
        }
    }
}
