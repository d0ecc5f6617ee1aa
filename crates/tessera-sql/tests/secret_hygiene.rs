//! Secret hygiene: after tokens of every kind and spelling are issued, redeemed, used, rotated,
//! regenerated and audited through the store, no secret appears anywhere in what the database
//! holds: the raw bytes of the SQLite file and its `-wal` and `-shm` files (while open and after
//! closing), and a plain-text `pg_dump` of the PostgreSQL schema. Neither the whole secret, its
//! canonical form, nor any 8-character piece of it past the non-secret hint. Deployment and
//! onboarding secrets are also kept sealed (the `sealed` column): the sealed values are in the
//! files (a positive control), their plaintext is not, before or after a pepper rotation
//! re-seals them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

mod common;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use common::fixtures;
use tessera_core::audit::{Actor, AuditAction, AuditEvent};
use tessera_core::digest::{KeyId, Peppers};
use tessera_core::format::{Spelling, parse};
use tessera_core::id::{DeviceId, EndpointId, UserId};
use tessera_core::kind::endpoint::{Mapping, Method};
use tessera_core::kind::onboarding::DeviceBinding;
use tessera_core::lifecycle::State;
use tessera_core::seal::Sealed;
use tessera_core::{Kind, Secret};
use tessera_sql::SqliteStore;
use tessera_store::{Redemption, StateChange, Store, UsageOutcome, UsageSubject};
use time::Duration;

/// What must never be found, per secret: every 8-byte piece of it past the non-secret hint,
/// in its presented and its canonical form (so the whole secret, too).
struct Needles {
    kind: Kind,
    pieces: Vec<[u8; 8]>,
}

impl Needles {
    fn of(kind: Kind, secret: &Secret) -> Self {
        let text = secret.expose_secret();
        let presented = parse(kind, text).expect("a generated secret parses");
        // The hint shows the prefix and four characters; everything after is secret.
        let shown = presented.hint().as_str().trim_end_matches('…').len();
        let mut pieces: Vec<[u8; 8]> = Vec::new();
        for form in [text.as_bytes(), presented.canonical()] {
            assert!(
                form.len() >= shown + 16,
                "a secret is much longer than its hint"
            );
            pieces.extend(form[shown..].windows(8).map(|w| {
                let mut piece = [0u8; 8];
                piece.copy_from_slice(w);
                piece
            }));
        }
        Self { kind, pieces }
    }

    /// How many pieces are in `haystack`.
    fn found(&self, haystack: &Haystack) -> usize {
        self.pieces
            .iter()
            .filter(|p| haystack.0.contains(*p))
            .count()
    }

    /// Fail if any piece is in `haystack` (named `what`).
    fn assert_absent(&self, haystack: &Haystack, what: &str) {
        let found = self.found(haystack);
        assert_eq!(
            found, 0,
            "{found} pieces of a {} secret were found in {what}",
            self.kind
        );
    }
}

/// Every 8-byte window of some bytes.
struct Haystack(HashSet<[u8; 8]>);

impl Haystack {
    fn of(bytes: &[u8]) -> Self {
        Self(
            bytes
                .windows(8)
                .map(|w| {
                    let mut piece = [0u8; 8];
                    piece.copy_from_slice(w);
                    piece
                })
                .collect(),
        )
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Issue and use tokens of every kind through `store`; returns every secret it generated and
/// the sealed values stored last.
async fn exercise(store: &dyn Store) -> (Vec<Needles>, Vec<Vec<u8>>) {
    let pepper = fixtures::pepper();
    let now = fixtures::now();
    let mut needles = Vec::new();
    let issued = fixtures::every_kind(&pepper);
    let mut records = Vec::new();
    for (secret, record) in &issued {
        needles.push(Needles::of(record.kind(), secret));
        store.insert(record, &[]).await.expect("insert");
        store
            .append(
                &AuditEvent::new(
                    now,
                    Actor::User(UserId::parse("admin").expect("a user")),
                    AuditAction::Issued,
                )
                .token(record.id, record.kind(), &record.hint),
            )
            .await
            .expect("audit issue");
        records.push(record.clone());
    }
    // A bulk issue.
    let batch: Vec<_> = (0..5)
        .map(|i| {
            fixtures::issue(
                &pepper,
                fixtures::onboarding("p", &format!("group-{i}"), DeviceBinding::Any),
                Spelling::Prefixed,
            )
        })
        .collect();
    let batch_records: Vec<_> = batch.iter().map(|(_, r)| r.clone()).collect();
    store
        .insert_many(&batch_records, &[])
        .await
        .expect("insert a batch");
    needles.extend(batch.iter().map(|(s, r)| Needles::of(r.kind(), s)));

    let device = DeviceId::parse("SN-0001").expect("a device");
    let ip: IpAddr = "203.0.113.7".parse().expect("an address");
    for r in &records {
        match r.kind() {
            Kind::Onboarding => {
                let done = store
                    .redeem(&r.digest, &device, now, &tessera_store::RedeemEvents::NONE)
                    .await
                    .expect("redeem");
                assert!(matches!(done, Redemption::Redeemed(_)), "{done:?}");
            }
            Kind::Application => {
                let done = store
                    .record_usage(r.id, &UsageSubject::Ip(ip), now)
                    .await
                    .expect("usage");
                assert!(matches!(done, UsageOutcome::Counted(_)));
                store
                    .set_blocked(r.id, "198.51.100.1".parse().expect("an address"), true, &[])
                    .await
                    .expect("block");
            }
            Kind::Endpoint => {
                let subject = UsageSubject::Endpoint(
                    EndpointId::parse("/api/orders").expect("an endpoint"),
                    Method::Get,
                );
                store
                    .record_usage(r.id, &subject, now)
                    .await
                    .expect("usage");
            }
            Kind::Deployment | Kind::Auth => {}
        }
        store
            .touch(r.id, now, Duration::minutes(5))
            .await
            .expect("touch");
    }
    let secondary = records
        .iter()
        .find(|r| r.spelling == Spelling::Plain64)
        .expect("a secondary");
    store
        .put_mapping(
            &Mapping {
                secondary: secondary.id,
                endpoint: EndpointId::parse("/api/orders").expect("an endpoint"),
                method: Method::Get,
                enabled: true,
            },
            &[],
        )
        .await
        .expect("map");

    // Rotation: the old token superseded, a new one with a new secret.
    let old = records
        .iter()
        .find(|r| r.kind() == Kind::Auth)
        .expect("an auth token");
    let (secret, new) = fixtures::issue(&pepper, old.data.clone(), Spelling::Prefixed);
    needles.push(Needles::of(new.kind(), &secret));
    let mut change = StateChange::new(State::Active, State::Superseded, now);
    change.grace_until = Some(now + Duration::hours(1));
    change.successor = Some(new.id);
    store
        .replace(old.id, &change, &new, &[])
        .await
        .expect("rotate");

    // Regeneration in place: same id, a new secret.
    let (secret, regenerated) = fixtures::issue(&pepper, secondary.data.clone(), Spelling::Plain64);
    needles.push(Needles::of(Kind::Endpoint, &secret));
    store
        .set_digest(secondary.id, &regenerated.digest, &regenerated.hint, &[])
        .await
        .expect("regenerate");

    // Pepper rotation: every sealed secret is opened under the old pepper and sealed anew
    // under the new one, as `TokenService::reseal` does.
    let peppers = Peppers::new(fixtures::pepper2()).with_previous(fixtures::pepper());
    let mut sealed = Vec::new();
    for r in store
        .list(&tessera_store::TokenFilter::default())
        .await
        .expect("list")
    {
        let Some(s) = &r.sealed else { continue };
        assert_eq!(s.key(), KeyId(1));
        let secret = peppers.open(r.id, s).expect("open under the old pepper");
        let fresh = peppers
            .seal(r.id, &secret)
            .expect("seal under the new pepper");
        let back = store
            .set_sealed(r.id, Some(&fresh), &[])
            .await
            .expect("re-seal");
        assert_eq!(back.sealed.as_ref().map(Sealed::key), Some(KeyId(2)));
        sealed.push(fresh.to_bytes());
    }
    // Every deployment and onboarding token issued above (three single ones and the batch of
    // five) holds a sealed value, so an empty column cannot pass the byte checks.
    let expected = issued
        .iter()
        .filter(|(_, r)| matches!(r.kind(), Kind::Deployment | Kind::Onboarding))
        .count()
        + batch.len();
    assert_eq!(expected, 8, "the fixtures issue eight sealable tokens");
    assert_eq!(
        sealed.len(),
        expected,
        "every deployment and onboarding token is sealed"
    );
    (needles, sealed)
}

fn read_or_empty(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// Every byte SQLite keeps for the database at `path`.
fn sqlite_bytes(path: &Path) -> Vec<(String, Vec<u8>)> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            let p = std::path::PathBuf::from(p);
            (p.display().to_string(), read_or_empty(&p))
        })
        .collect()
}

#[test]
fn the_search_finds_a_planted_secret() {
    for kind in Kind::ALL {
        let secret = Secret::generate(kind).expect("a secret");
        let needles = Needles::of(kind, &secret);
        let mut planted = b"some bytes before ".to_vec();
        planted.extend_from_slice(secret.expose_secret().as_bytes());
        planted.extend_from_slice(b" and after");
        assert!(needles.found(&Haystack::of(&planted)) > 0, "{kind}");
        let tail = &secret.expose_secret()[20..30];
        assert!(
            needles.found(&Haystack::of(tail.as_bytes())) > 0,
            "{kind}: a piece alone"
        );
    }
}

#[tokio::test]
async fn sqlite_files_hold_no_secret() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("hygiene.db");
    let store = SqliteStore::open(&path).await.expect("open");
    store.migrate().await.expect("migrate");
    let (needles, sealed) = exercise(&store).await;
    assert!(
        needles.len() >= 14,
        "every kind, a batch, a rotation and a regeneration"
    );

    let open_files = sqlite_bytes(&path);
    let all: Vec<u8> = open_files.iter().flat_map(|(_, b)| b.clone()).collect();
    // A positive control: the search does see what the store wrote (hints are stored).
    assert!(
        contains(&all, b"tsr_dep_"),
        "the deployment hint is in the files"
    );
    // And the sealed values are there too: the plaintext's absence below is not an accident
    // of the column being empty.
    for s in &sealed {
        assert!(contains(&all, s), "a sealed value is in the files");
    }
    for (name, bytes) in &open_files {
        let haystack = Haystack::of(bytes);
        for n in &needles {
            n.assert_absent(&haystack, name);
        }
    }
    store.close().await;
    for (name, bytes) in sqlite_bytes(&path) {
        let haystack = Haystack::of(&bytes);
        for n in &needles {
            n.assert_absent(&haystack, &format!("{name} after closing"));
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::path::PathBuf;
    use std::process::Command;

    use tessera_sql::postgres::{PostgresConfig, PostgresStore};

    use super::{Haystack, common, contains, exercise};

    /// `pg_dump`: from `TESSERA_PG_BIN` (set by .ci/postgres-up), else the newest
    /// installed server's, else `PATH`.
    fn pg_dump() -> PathBuf {
        if let Ok(bin) = std::env::var("TESSERA_PG_BIN") {
            let p = PathBuf::from(bin).join("pg_dump");
            if p.exists() {
                return p;
            }
        }
        let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("bin/pg_dump"))
            .filter(|p| p.exists())
            .collect();
        installed.sort();
        installed.pop().unwrap_or_else(|| PathBuf::from("pg_dump"))
    }

    #[tokio::test]
    async fn postgres_dump_holds_no_secret() {
        let Some(url) = common::postgres_url_or_skip() else {
            return;
        };
        let schema = common::fresh_schema();
        let config = PostgresConfig::new(url.as_str())
            .schema(&schema)
            .expect("a schema")
            .max_connections(4);
        let store = PostgresStore::connect_with(config).await.expect("connect");
        store.migrate().await.expect("migrate");
        let (needles, sealed) = exercise(&store).await;
        store.close().await;

        let dump = Command::new(pg_dump())
            .arg("--dbname")
            .arg(&url)
            .arg("--schema")
            .arg(&schema)
            .arg("--format=plain")
            .output()
            .expect("run pg_dump (install the postgresql client, or set TESSERA_PG_BIN)");
        assert!(
            dump.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&dump.stderr)
        );
        let text = dump.stdout;
        assert!(
            contains(&text, b"tsr_dep_"),
            "the dump holds the stored hints"
        );
        assert!(
            contains(&text, b"_tessera_migrations"),
            "the dump holds the schema"
        );
        // The dump holds the sealed values (bytea as hex), so the column was dumped.
        for s in &sealed {
            let hex: String = s.iter().map(|b| format!("{b:02x}")).collect();
            assert!(
                contains(&text, hex.as_bytes()),
                "a sealed value is in the dump"
            );
        }
        let haystack = Haystack::of(&text);
        for n in &needles {
            n.assert_absent(&haystack, "the pg_dump of the test schema");
        }

        let pool = sqlx::PgPool::connect(&url).await.expect("connect directly");
        let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        sqlx::raw_sql(&drop)
            .execute(&pool)
            .await
            .expect("drop the schema");
        pool.close().await;
    }
}
