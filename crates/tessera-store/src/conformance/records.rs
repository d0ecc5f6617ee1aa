//! Records: insert, lookups, listing, compare-and-set state changes, replace, kind data,
//! digests, coalesced last use and purge.

use std::sync::Arc;

use tessera_core::audit::{Actor, AuditAction};
use tessera_core::digest::{Digest, KeyId};
use tessera_core::format::Spelling;
use tessera_core::id::{
    AccessType, ApplicationName, Description, DeviceGroup, EndpointId, Permission, PolicyId,
    TokenId,
};
use tessera_core::kind::application::AccessTypes;
use tessera_core::kind::auth::Scope;
use tessera_core::kind::endpoint::Method;
use tessera_core::kind::onboarding::{DeviceBinding, UsageLimit};
use tessera_core::kind::{
    ApplicationData, AuthData, DeploymentData, EndpointData, KindData, OnboardingData,
};
use tessera_core::lifecycle::State;
use tessera_core::record::TokenRecord;
use time::Duration;
use time::macros::{datetime, offset};

use super::fixtures::{
    self, T0, application, at, auth, deployment, device, digest, endpoint, ip, onboarding, primary,
    record, secondary, user,
};
use super::{Case, Context, Outcome};
use crate::{Redemption, StateChange, Store, StoreError, TokenFilter, UsageSubject};

pub(super) fn cases() -> Vec<Case> {
    cases![
        insert_round_trips_every_kind,
        insert_round_trips_minimal_records,
        insert_round_trips_awkward_text,
        insert_round_trips_every_state,
        insert_round_trips_microseconds_and_offsets,
        insert_rejects_duplicate_id,
        insert_rejects_duplicate_digest,
        insert_rejects_application_name_in_force,
        insert_allows_application_name_out_of_force,
        insert_allows_shared_names_outside_applications,
        insert_rejects_application_name_in_another_case,
        insert_rejects_auth_name_of_the_same_owner,
        insert_many_rejects_names_that_differ_in_case,
        insert_many_stores_all,
        insert_many_is_all_or_nothing,
        insert_many_accepts_empty,
        get_unknown_is_none,
        find_by_digest_unknown_is_none,
        list_returns_everything_oldest_first,
        list_filters_like_token_filter_matches,
        change_state_applies_from_matching_state,
        change_state_to_active_sets_activated_at,
        change_state_clears_grace_and_keeps_successor,
        change_state_rejects_stale_from,
        change_state_unknown_is_not_found,
        change_state_into_force_with_taken_name_is_already_exists,
        replace_applies_change_and_inserts,
        replace_lets_new_reuse_application_name,
        replace_conflict_changes_nothing,
        replace_collision_changes_nothing,
        replace_unknown_old_is_not_found,
        update_data_replaces_kind_data,
        update_data_rejects_other_kind,
        update_data_unknown_is_not_found,
        update_data_rejects_taken_application_name,
        set_digest_moves_lookup_and_keeps_mappings,
        set_digest_rejects_taken_digest,
        set_digest_unknown_is_not_found,
        set_sealed_replaces_or_drops_only_the_seal,
        set_sealed_unknown_is_not_found,
        touch_writes_first_use,
        touch_coalesces_within_interval,
        touch_writes_once_interval_passed,
        purge_removes_record_usage_enrollments_and_mappings,
        purge_counts_only_existing_records,
        purge_frees_digest_and_application_name,
    ]
}

/// Insert every record, failing on the first error.
pub(super) async fn insert_all(store: &dyn Store, records: &[TokenRecord]) -> Outcome {
    for r in records {
        store.insert(r, &[]).await.ctx("insert")?;
    }
    Ok(())
}

/// The stored record with this id, failing if there is none.
pub(super) async fn stored(
    store: &dyn Store,
    id: TokenId,
) -> Result<TokenRecord, libtest_mimic::Failed> {
    store.get(id).await.ctx("get")?.ctx("get a stored record")
}

/// Check that `r` reads back unchanged by id and by digest.
async fn reads_back(store: &dyn Store, r: &TokenRecord) -> Outcome {
    ensure_eq!(
        stored(store, r.id).await?,
        *r,
        "get({}) of a {} record",
        r.id,
        r.kind()
    );
    let by_digest = store
        .find_by_digest(&r.digest)
        .await
        .ctx("find_by_digest")?;
    ensure_eq!(
        by_digest.as_ref(),
        Some(r),
        "find_by_digest of a {} record",
        r.kind()
    );
    Ok(())
}

fn with_name(
    mut r: TokenRecord,
    n: &str,
    state: State,
) -> Result<TokenRecord, libtest_mimic::Failed> {
    if let KindData::Application(a) = &mut r.data {
        a.name = ApplicationName::parse(n)?;
    }
    r.state = state;
    Ok(r)
}

/// Every field of a record of every kind and role comes back as stored, by id and by digest.
async fn insert_round_trips_every_kind(store: Arc<dyn Store>) -> Outcome {
    let all = fixtures::every_kind()?;
    insert_all(&*store, &all).await?;
    for r in &all {
        reads_back(&*store, r).await?;
    }
    Ok(())
}

/// A record with every optional field empty comes back with them empty.
async fn insert_round_trips_minimal_records(store: Arc<dyn Store>) -> Outcome {
    let all = [
        record(deployment("d")?)?,
        record(onboarding(DeviceBinding::Any)?)?,
        record(primary("/e", Method::Get)?)?,
        record(secondary("s", true)?)?,
        record(auth("u", "a", &["p"])?)?,
        record(application("a")?)?,
    ];
    insert_all(&*store, &all).await?;
    for r in &all {
        reads_back(&*store, r).await?;
    }
    Ok(())
}

/// Unicode, quotes, semicolons, `--`, backslashes, LIKE wildcards, newlines and strings at
/// their maximum length come back byte for byte.
async fn insert_round_trips_awkward_text(store: Arc<dyn Store>) -> Outcome {
    const NASTY: &str = "Zoë's \"café\" 名前 🚀; DROP TABLE tokens; -- %_\\ $1 ?";
    fn long(seed: &str, max: usize) -> String {
        seed.chars().cycle().take(max).collect()
    }
    let u = user(&long(NASTY, 256))?;
    let mut records = vec![
        record(KindData::Deployment(DeploymentData {
            name: fixtures::name(NASTY)?,
            auto_renew: false,
        }))?,
        record(KindData::Deployment(DeploymentData {
            name: fixtures::name(&long(NASTY, 128))?,
            auto_renew: true,
        }))?,
        record(KindData::Onboarding(OnboardingData {
            policy: PolicyId::parse(long(NASTY, 256))?,
            group: DeviceGroup::parse(NASTY)?,
            binding: DeviceBinding::Device(device(&long("IMEI;'--\"名", 256))?),
        }))?,
        record(KindData::Endpoint(EndpointData::Primary {
            endpoint: EndpointId::parse(long("/api/v1/ü?x='1';--&y=\"2\"%_", 512))?,
            method: Method::Post,
        }))?,
        record(KindData::Endpoint(EndpointData::Secondary {
            name: fixtures::name(NASTY)?,
            description: Description::parse(long("line one;\n\t'two' -- \"three\" ✓\\", 1024))?,
            enabled: true,
        }))?,
        record(KindData::Endpoint(EndpointData::Secondary {
            name: fixtures::name("empty description")?,
            description: Description::parse("")?,
            enabled: false,
        }))?,
        record(KindData::Auth(AuthData {
            owner: u.clone(),
            name: fixtures::name(NASTY)?,
            scope: Scope::new([
                Permission::parse(NASTY)?,
                Permission::parse(long("perm'--;", 128))?,
                Permission::parse("reset_password")?,
            ])?,
        }))?,
        record(KindData::Application(ApplicationData {
            name: ApplicationName::parse("a--b")?,
            description: Description::parse(NASTY)?,
            access: AccessTypes::new([AccessType::parse(long(NASTY, 64))?])?,
        }))?,
        record(KindData::Application(ApplicationData {
            name: ApplicationName::parse(long("Ab-9", 32))?,
            description: Description::parse(long(NASTY, 1024))?,
            access: AccessTypes::new([AccessType::parse("x")?])?,
        }))?,
    ];
    for r in &mut records {
        r.created_by = Actor::User(u.clone());
        r.generated_by = Some(user(NASTY)?);
    }
    insert_all(&*store, &records).await?;
    for r in &records {
        reads_back(&*store, r).await?;
    }
    Ok(())
}

/// A record in each lifecycle state (including `Deleted` tombstones) comes back in it.
async fn insert_round_trips_every_state(store: Arc<dyn Store>) -> Outcome {
    for state in State::ALL {
        let mut r = record(onboarding(DeviceBinding::Any)?)?;
        r.state = state;
        store.insert(&r, &[]).await.ctx("insert")?;
        reads_back(&*store, &r).await?;
    }
    Ok(())
}

/// Timestamps keep microseconds and their instant, whatever offset they were given in.
async fn insert_round_trips_microseconds_and_offsets(store: Arc<dyn Store>) -> Outcome {
    let mut r = fixtures::full_record(deployment("precise")?)?;
    r.created_at = datetime!(2026-03-01 12:00:00.123_456 UTC);
    r.activated_at = datetime!(2026-03-01 12:00:00.999_999 UTC);
    r.last_used_at = Some(datetime!(2026-03-01 14:00:00.000_001 +02:00));
    r.expires_at = Some(datetime!(2099-12-31 23:59:59.5 -05:30));
    r.grace_until = Some(datetime!(1999-12-31 23:59:59 UTC).to_offset(offset!(+9)));
    store.insert(&r, &[]).await.ctx("insert")?;
    reads_back(&*store, &r).await
}

/// A second record with a taken id is refused with `AlreadyExists`; the first is unchanged.
async fn insert_rejects_duplicate_id(store: Arc<dyn Store>) -> Outcome {
    let first = record(deployment("first")?)?;
    store.insert(&first, &[]).await.ctx("insert")?;
    let mut second = record(auth("u", "second", &["p"])?)?;
    second.id = first.id;
    ensure_matches!(
        store.insert(&second, &[]).await,
        Err(StoreError::AlreadyExists { .. }),
        "insert with a taken id"
    );
    reads_back(&*store, &first).await?;
    ensure!(
        store
            .find_by_digest(&second.digest)
            .await
            .ctx("find_by_digest")?
            .is_none(),
        "the refused record is findable by its digest"
    );
    Ok(())
}

/// A second record with a taken digest is refused with `AlreadyExists`; the first is unchanged.
async fn insert_rejects_duplicate_digest(store: Arc<dyn Store>) -> Outcome {
    let first = record(deployment("first")?)?;
    store.insert(&first, &[]).await.ctx("insert")?;
    let mut second = record(deployment("second")?)?;
    second.digest = first.digest;
    ensure_matches!(
        store.insert(&second, &[]).await,
        Err(StoreError::AlreadyExists { .. }),
        "insert with a taken digest"
    );
    reads_back(&*store, &first).await?;
    ensure!(
        store.get(second.id).await.ctx("get")?.is_none(),
        "the refused record was stored"
    );
    Ok(())
}

/// An application name held by an application token in force (active, disabled, dormant,
/// expired or exhausted) cannot be taken again.
async fn insert_rejects_application_name_in_force(store: Arc<dyn Store>) -> Outcome {
    for (i, state) in [
        State::Active,
        State::Disabled,
        State::Dormant,
        State::Expired,
        State::Exhausted,
    ]
    .into_iter()
    .enumerate()
    {
        let n = format!("app-{i}");
        let holder = with_name(record(application("x")?)?, &n, state)?;
        store.insert(&holder, &[]).await.ctx("insert the holder")?;
        let taker = with_name(record(application("x")?)?, &n, State::Active)?;
        ensure_matches!(
            store.insert(&taker, &[]).await,
            Err(StoreError::AlreadyExists { .. }),
            "insert of a name held by a {state} application token"
        );
        ensure!(
            store.get(taker.id).await.ctx("get")?.is_none(),
            "the refused record was stored"
        );
    }
    Ok(())
}

/// An application name held only by superseded, rotated-out, revoked or deleted tokens can be
/// taken again.
async fn insert_allows_application_name_out_of_force(store: Arc<dyn Store>) -> Outcome {
    for (i, state) in [
        State::Superseded,
        State::RotatedOut,
        State::Revoked,
        State::Deleted,
    ]
    .into_iter()
    .enumerate()
    {
        let n = format!("app-{i}");
        let holder = with_name(record(application("x")?)?, &n, state)?;
        store.insert(&holder, &[]).await.ctx("insert the holder")?;
        let taker = with_name(record(application("x")?)?, &n, State::Active)?;
        store
            .insert(&taker, &[])
            .await
            .ctx(&format!("insert of a name held only by a {state} token"))?;
        reads_back(&*store, &holder).await?;
        reads_back(&*store, &taker).await?;
    }
    Ok(())
}

/// Names of other kinds are not unique: two deployments, auth tokens or secondaries may share
/// one, and may share an application token's.
async fn insert_allows_shared_names_outside_applications(store: Arc<dyn Store>) -> Outcome {
    let all = [
        record(application("shared")?)?,
        record(deployment("shared")?)?,
        record(deployment("shared")?)?,
        // Auth names are unique per owner: another owner may use the name.
        record(auth("u", "shared", &["p"])?)?,
        record(auth("v", "shared", &["p"])?)?,
        record(secondary("shared", true)?)?,
        record(secondary("shared", true)?)?,
    ];
    insert_all(&*store, &all).await?;
    for r in &all {
        reads_back(&*store, r).await?;
    }
    Ok(())
}

/// Application names are unique ignoring case: `Feed-1` is refused while `feed-1` is in
/// force, and taken once it is revoked.
async fn insert_rejects_application_name_in_another_case(store: Arc<dyn Store>) -> Outcome {
    let holder = record(application("feed-1")?)?;
    store.insert(&holder, &[]).await.ctx("insert the holder")?;
    for spelling in ["FEED-1", "Feed-1", "feed-1"] {
        let taker = record(application(spelling)?)?;
        ensure_matches!(
            store.insert(&taker, &[]).await,
            Err(StoreError::AlreadyExists { .. }),
            "insert of {spelling} while feed-1 is in force"
        );
        ensure!(
            store.get(taker.id).await.ctx("get")?.is_none(),
            "the refused record was stored"
        );
    }
    store
        .change_state(
            holder.id,
            &StateChange::new(State::Active, State::Revoked, at(1)),
            &[],
        )
        .await
        .ctx("revoke the holder")?;
    let taker = record(application("FEED-1")?)?;
    store.insert(&taker, &[]).await.ctx("insert once revoked")?;
    reads_back(&*store, &taker).await
}

/// Auth names are unique per owner ignoring case, among tokens in force; deleting a token
/// frees its name.
async fn insert_rejects_auth_name_of_the_same_owner(store: Arc<dyn Store>) -> Outcome {
    let holder = record(auth("alice", "CI deploy", &["p"])?)?;
    store.insert(&holder, &[]).await.ctx("insert the holder")?;
    for spelling in ["CI deploy", "ci DEPLOY"] {
        let taker = record(auth("alice", spelling, &["p"])?)?;
        ensure_matches!(
            store.insert(&taker, &[]).await,
            Err(StoreError::AlreadyExists { .. }),
            "alice's second auth token named {spelling}"
        );
    }
    // Another owner, or an owner whose name ends where another's begins, is not a clash.
    for (owner, name) in [("bob", "CI deploy"), ("alic", "e:ci deploy")] {
        let other = record(auth(owner, name, &["p"])?)?;
        store
            .insert(&other, &[])
            .await
            .ctx("another owner's token")?;
    }
    store
        .change_state(
            holder.id,
            &StateChange::new(State::Active, State::Deleted, at(1)),
            &[],
        )
        .await
        .ctx("delete the holder")?;
    let again = record(auth("alice", "ci deploy", &["p"])?)?;
    store
        .insert(&again, &[])
        .await
        .ctx("the name once deleted")?;
    reads_back(&*store, &again).await
}

/// A batch holding two application names that differ only in case stores nothing.
async fn insert_many_rejects_names_that_differ_in_case(store: Arc<dyn Store>) -> Outcome {
    let batch = [record(application("Sync")?)?, record(application("sYNC")?)?];
    ensure_matches!(
        store.insert_many(&batch, &[]).await,
        Err(StoreError::AlreadyExists { .. }),
        "a batch with Sync and sYNC"
    );
    for r in &batch {
        ensure!(
            store.get(r.id).await.ctx("get")?.is_none(),
            "a record of the refused batch was stored"
        );
    }
    Ok(())
}

/// A batch is stored whole.
async fn insert_many_stores_all(store: Arc<dyn Store>) -> Outcome {
    let mut batch = Vec::new();
    for i in 0..50 {
        let mut r = fixtures::onboarding_record(UsageLimit::SINGLE)?;
        r.created_at = at(i);
        batch.push(r);
    }
    store.insert_many(&batch, &[]).await.ctx("insert_many")?;
    for r in &batch {
        reads_back(&*store, r).await?;
    }
    ensure_eq!(
        store.list(&TokenFilter::default()).await.ctx("list")?,
        batch,
        "list after insert_many"
    );
    Ok(())
}

/// A batch that collides with a stored record, or within itself, stores nothing.
async fn insert_many_is_all_or_nothing(store: Arc<dyn Store>) -> Outcome {
    let existing = record(application("taken")?)?;
    store.insert(&existing, &[]).await.ctx("insert")?;
    let fresh = || -> Result<Vec<TokenRecord>, libtest_mimic::Failed> {
        Ok(vec![
            record(deployment("a")?)?,
            record(deployment("b")?)?,
            record(deployment("c")?)?,
        ])
    };
    let mut batches = Vec::new();
    // Collides with the stored record: by id, by digest, by application name.
    for collide in 0..3 {
        let mut b = fresh()?;
        let mut last = record(application("free")?)?;
        match collide {
            0 => last.id = existing.id,
            1 => last.digest = existing.digest,
            _ => last = with_name(last, "taken", State::Active)?,
        }
        b.push(last);
        batches.push(b);
    }
    // Collides within itself: by id, by digest, by application name.
    for collide in 0..3 {
        let mut b = fresh()?;
        let first = record(application("twin")?)?;
        let mut second = record(application("other")?)?;
        match collide {
            0 => second.id = first.id,
            1 => second.digest = first.digest,
            _ => second = with_name(second, "twin", State::Active)?,
        }
        b.insert(1, first);
        b.push(second);
        batches.push(b);
    }
    for (i, batch) in batches.iter().enumerate() {
        ensure_matches!(
            store.insert_many(batch, &[]).await,
            Err(StoreError::AlreadyExists { .. }),
            "colliding batch {i}"
        );
        for r in batch {
            if r.id != existing.id {
                ensure!(
                    store.get(r.id).await.ctx("get")?.is_none(),
                    "batch {i} was refused but a record of it was stored"
                );
            }
        }
    }
    ensure_eq!(
        store.list(&TokenFilter::default()).await.ctx("list")?,
        vec![existing],
        "records after refused batches"
    );
    Ok(())
}

/// An empty batch stores nothing and succeeds.
async fn insert_many_accepts_empty(store: Arc<dyn Store>) -> Outcome {
    store
        .insert_many(&[], &[])
        .await
        .ctx("insert_many of nothing")?;
    ensure!(
        store
            .list(&TokenFilter::default())
            .await
            .ctx("list")?
            .is_empty(),
        "records appeared"
    );
    Ok(())
}

/// An unknown id reads as `None`.
async fn get_unknown_is_none(store: Arc<dyn Store>) -> Outcome {
    store
        .insert(&record(deployment("d")?)?, &[])
        .await
        .ctx("insert")?;
    ensure!(
        store.get(TokenId::generate()?).await.ctx("get")?.is_none(),
        "found an unknown id"
    );
    Ok(())
}

/// An unknown digest reads as `None`, including the same bytes under another pepper's key id.
async fn find_by_digest_unknown_is_none(store: Arc<dyn Store>) -> Outcome {
    let r = record(deployment("d")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let (other, _) = digest(tessera_core::Kind::Deployment)?;
    ensure!(
        store.find_by_digest(&other).await.ctx("find")?.is_none(),
        "found an unknown digest"
    );
    let other_key = Digest::from_parts(KeyId(r.digest.key().0 + 1), *r.digest.as_bytes());
    ensure!(
        store
            .find_by_digest(&other_key)
            .await
            .ctx("find")?
            .is_none(),
        "found a digest by its bytes under another key id"
    );
    Ok(())
}

/// With no filter, every record is listed, oldest `created_at` first whatever the insert order.
async fn list_returns_everything_oldest_first(store: Arc<dyn Store>) -> Outcome {
    let mut all = Vec::new();
    for secs in [50, 10, 40, 0, 30, -20, 20] {
        let mut r = record(deployment(&format!("d{secs}"))?)?;
        r.created_at = at(secs);
        all.push(r);
    }
    insert_all(&*store, &all).await?;
    all.sort_by_key(|r| r.created_at);
    ensure_eq!(
        store.list(&TokenFilter::default()).await.ctx("list")?,
        all,
        "list"
    );
    Ok(())
}

/// Every filter field, alone and combined, lists exactly what `TokenFilter::matches` passes,
/// oldest first.
async fn list_filters_like_token_filter_matches(store: Arc<dyn Store>) -> Outcome {
    let mut all = Vec::new();
    let datas = [
        deployment("d")?,
        onboarding(DeviceBinding::Any)?,
        primary("/alpha", Method::Get)?,
        primary("/alpha", Method::Post)?,
        primary("/beta", Method::Get)?,
        secondary("s", true)?,
        auth("ann", "a1", &["p"])?,
        auth("bob", "b1", &["p"])?,
        auth("ann", "a2", &["q"])?,
        application("app-1")?,
    ];
    let states = [
        State::Active,
        State::Disabled,
        State::Expired,
        State::Revoked,
        State::Superseded,
    ];
    let mut n = 0i64;
    for (i, data) in datas.iter().enumerate() {
        for (j, state) in states.iter().enumerate() {
            let mut r = record(data.clone())?;
            // Unique names (applications; auth per owner) vary per record.
            match &mut r.data {
                KindData::Application(a) => {
                    a.name = ApplicationName::parse(format!("app-{i}-{j}"))?;
                }
                KindData::Auth(a) => a.name = fixtures::name(&format!("{}-{j}", a.name))?,
                _ => {}
            }
            r.state = *state;
            r.created_at = at(1_000 - n * 7 % 193);
            r.expires_at = match n % 3 {
                0 => None,
                1 => Some(at(n * 60)),
                _ => Some(at(-n * 60)),
            };
            n += 1;
            all.push(r);
        }
    }
    // Distinct creation times, so "oldest first" is one order.
    for (k, r) in all.iter_mut().enumerate() {
        r.created_at += Duration::milliseconds(i64::try_from(k).unwrap_or(0));
    }
    store.insert_many(&all, &[]).await.ctx("insert_many")?;
    let base = TokenFilter::default;
    let filters = [
        base(),
        base().kind(tessera_core::Kind::Auth),
        base().kind(tessera_core::Kind::Endpoint),
        base().kind(tessera_core::Kind::Application),
        base().states([State::Active]),
        base().states([State::Disabled, State::Revoked]),
        base().states([]),
        base().owner(user("ann")?),
        base().owner(user("nobody")?),
        base().endpoint(endpoint("/alpha")?),
        base().endpoint(endpoint("/gamma")?),
        base().expires_before(at(0)),
        base().expires_before(at(600)),
        base().expires_before(at(-3_000)),
        base()
            .kind(tessera_core::Kind::Auth)
            .owner(user("ann")?)
            .states([State::Active]),
        base()
            .kind(tessera_core::Kind::Endpoint)
            .endpoint(endpoint("/alpha")?)
            .states([State::Active, State::Expired]),
        base()
            .kind(tessera_core::Kind::Deployment)
            .owner(user("ann")?),
        base()
            .states([State::Active, State::Superseded])
            .expires_before(at(1_200)),
        base()
            .kind(tessera_core::Kind::Onboarding)
            .expires_before(at(100_000)),
    ];
    let mut sorted = all.clone();
    sorted.sort_by_key(|r| r.created_at);
    for f in &filters {
        let expected: Vec<_> = sorted.iter().filter(|r| f.matches(r)).cloned().collect();
        let got = store.list(f).await.ctx("list")?;
        let ids = |v: &[TokenRecord]| v.iter().map(|r| r.id).collect::<Vec<_>>();
        ensure_eq!(ids(&got), ids(&expected), "ids listed for {f:?}");
        ensure_eq!(got, expected, "records listed for {f:?}");
    }
    // An expiry exactly at the bound passes.
    let mut edge = record(deployment("edge")?)?;
    edge.expires_at = Some(at(-5_000));
    store.insert(&edge, &[]).await.ctx("insert")?;
    let got = store
        .list(&base().expires_before(at(-5_000)))
        .await
        .ctx("list")?;
    ensure!(
        got.iter().any(|r| r.id == edge.id),
        "expires_before is not inclusive"
    );
    Ok(())
}

/// A matching `from` applies the change: state, grace and successor set, returned and stored;
/// nothing else moves.
async fn change_state_applies_from_matching_state(store: Arc<dyn Store>) -> Outcome {
    let r = fixtures::full_record(deployment("d")?)?;
    let r = TokenRecord {
        state: State::Active,
        grace_until: None,
        successor: None,
        ..r
    };
    store.insert(&r, &[]).await.ctx("insert")?;
    let succ = TokenId::generate()?;
    let change = StateChange {
        grace_until: Some(at(3_600)),
        successor: Some(succ),
        ..StateChange::new(State::Active, State::Superseded, at(10))
    };
    let got = store
        .change_state(r.id, &change, &[])
        .await
        .ctx("change_state")?;
    let expected = TokenRecord {
        state: State::Superseded,
        grace_until: Some(at(3_600)),
        successor: Some(succ),
        ..r
    };
    ensure_eq!(got, expected, "returned record");
    reads_back(&*store, &expected).await
}

/// A change to `Active` sets `activated_at` to its instant; other changes leave it.
async fn change_state_to_active_sets_activated_at(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let off = store
        .change_state(
            r.id,
            &StateChange::new(State::Active, State::Disabled, at(100)),
            &[],
        )
        .await
        .ctx("disable")?;
    ensure_eq!(
        off.activated_at,
        r.activated_at,
        "activated_at after disable"
    );
    let on = store
        .change_state(
            r.id,
            &StateChange::new(State::Disabled, State::Active, at(200)),
            &[],
        )
        .await
        .ctx("enable")?;
    ensure_eq!(on.activated_at, at(200), "activated_at after enable");
    ensure_eq!(
        stored(&*store, r.id).await?.activated_at,
        at(200),
        "stored activated_at"
    );
    Ok(())
}

/// A change with no grace clears the stored grace; with no successor it keeps the stored one.
async fn change_state_clears_grace_and_keeps_successor(store: Arc<dyn Store>) -> Outcome {
    let succ = TokenId::generate()?;
    let mut r = record(deployment("d")?)?;
    r.state = State::Superseded;
    r.grace_until = Some(at(60));
    r.successor = Some(succ);
    store.insert(&r, &[]).await.ctx("insert")?;
    let got = store
        .change_state(
            r.id,
            &StateChange::new(State::Superseded, State::RotatedOut, at(60)),
            &[],
        )
        .await
        .ctx("change_state")?;
    let expected = TokenRecord {
        state: State::RotatedOut,
        grace_until: None,
        ..r
    };
    ensure_eq!(got, expected, "returned record");
    reads_back(&*store, &expected).await
}

/// A `from` that is no longer the stored state is a `Conflict`, and nothing changes.
async fn change_state_rejects_stale_from(store: Arc<dyn Store>) -> Outcome {
    let mut r = record(auth("u", "a", &["p"])?)?;
    r.state = State::Disabled;
    store.insert(&r, &[]).await.ctx("insert")?;
    for from in [State::Active, State::Dormant, State::Revoked] {
        let change = StateChange {
            grace_until: Some(at(5)),
            successor: Some(TokenId::generate()?),
            ..StateChange::new(from, State::Revoked, at(1))
        };
        ensure_matches!(
            store.change_state(r.id, &change, &[]).await,
            Err(StoreError::Conflict),
            "change from {from} of a disabled token"
        );
    }
    reads_back(&*store, &r).await
}

/// An unknown id is `NotFound`.
async fn change_state_unknown_is_not_found(store: Arc<dyn Store>) -> Outcome {
    ensure_matches!(
        store
            .change_state(
                TokenId::generate()?,
                &StateChange::new(State::Active, State::Revoked, T0),
                &[]
            )
            .await,
        Err(StoreError::NotFound { .. }),
        "change_state of an unknown id"
    );
    Ok(())
}

/// Bringing an application token back into force while another in force holds its name is
/// `AlreadyExists`, and nothing changes.
async fn change_state_into_force_with_taken_name_is_already_exists(
    store: Arc<dyn Store>,
) -> Outcome {
    let old = with_name(record(application("x")?)?, "feed", State::Superseded)?;
    let new = with_name(record(application("x")?)?, "feed", State::Active)?;
    insert_all(&*store, &[old.clone(), new]).await?;
    ensure_matches!(
        store
            .change_state(
                old.id,
                &StateChange::new(State::Superseded, State::Expired, at(1)),
                &[]
            )
            .await,
        Err(StoreError::AlreadyExists { .. }),
        "expire a superseded application token whose name was reused"
    );
    reads_back(&*store, &old).await
}

/// `replace` applies the change to the old token, stores the new one and returns the old one
/// as it is now.
async fn replace_applies_change_and_inserts(store: Arc<dyn Store>) -> Outcome {
    let old = record(deployment("d")?)?;
    store.insert(&old, &[]).await.ctx("insert")?;
    let mut new = record(deployment("d")?)?;
    new.created_at = at(5);
    new.activated_at = at(5);
    let change = StateChange {
        grace_until: Some(at(3_600)),
        successor: Some(new.id),
        ..StateChange::new(State::Active, State::Superseded, at(5))
    };
    let got = store
        .replace(old.id, &change, &new, &[])
        .await
        .ctx("replace")?;
    let expected = TokenRecord {
        state: State::Superseded,
        grace_until: Some(at(3_600)),
        successor: Some(new.id),
        ..old
    };
    ensure_eq!(got, expected, "replace returns the old token as changed");
    reads_back(&*store, &expected).await?;
    reads_back(&*store, &new).await
}

/// The new token may take the application name the old one held, since the change goes first.
async fn replace_lets_new_reuse_application_name(store: Arc<dyn Store>) -> Outcome {
    for (i, to) in [State::Superseded, State::RotatedOut]
        .into_iter()
        .enumerate()
    {
        let old = with_name(
            record(application("x")?)?,
            &format!("feed-{i}"),
            State::Active,
        )?;
        store.insert(&old, &[]).await.ctx("insert")?;
        let new = with_name(
            record(application("x")?)?,
            &format!("feed-{i}"),
            State::Active,
        )?;
        let change = StateChange {
            successor: Some(new.id),
            ..StateChange::new(State::Active, to, at(1))
        };
        store
            .replace(old.id, &change, &new, &[])
            .await
            .ctx("replace reusing the name")?;
        reads_back(&*store, &new).await?;
        ensure_eq!(
            stored(&*store, old.id).await?.state,
            to,
            "old token's state"
        );
    }
    Ok(())
}

/// A stale `from` is a `Conflict`: the old token is unchanged and the new one not stored.
async fn replace_conflict_changes_nothing(store: Arc<dyn Store>) -> Outcome {
    let mut old = record(deployment("d")?)?;
    old.state = State::Revoked;
    store.insert(&old, &[]).await.ctx("insert")?;
    let new = record(deployment("d")?)?;
    let change = StateChange::new(State::Active, State::Superseded, at(1));
    ensure_matches!(
        store.replace(old.id, &change, &new, &[]).await,
        Err(StoreError::Conflict),
        "replace of a revoked token"
    );
    reads_back(&*store, &old).await?;
    ensure!(
        store.get(new.id).await.ctx("get")?.is_none(),
        "new token stored by id"
    );
    ensure!(
        store
            .find_by_digest(&new.digest)
            .await
            .ctx("find")?
            .is_none(),
        "new token findable"
    );
    Ok(())
}

/// A new token that collides (id, digest or application name) is `AlreadyExists`: the old token
/// is unchanged and nothing is stored.
async fn replace_collision_changes_nothing(store: Arc<dyn Store>) -> Outcome {
    let other = with_name(record(application("x")?)?, "held", State::Active)?;
    store.insert(&other, &[]).await.ctx("insert")?;
    for collide in 0..3 {
        let old = with_name(
            record(application("x")?)?,
            &format!("old-{collide}"),
            State::Active,
        )?;
        store.insert(&old, &[]).await.ctx("insert")?;
        let mut new = with_name(
            record(application("x")?)?,
            &format!("new-{collide}"),
            State::Active,
        )?;
        match collide {
            0 => new.id = other.id,
            1 => new.digest = other.digest,
            _ => new = with_name(new, "held", State::Active)?,
        }
        let change = StateChange {
            grace_until: Some(at(60)),
            successor: Some(new.id),
            ..StateChange::new(State::Active, State::Superseded, at(1))
        };
        ensure_matches!(
            store.replace(old.id, &change, &new, &[]).await,
            Err(StoreError::AlreadyExists { .. }),
            "replace with a colliding new token ({collide})"
        );
        reads_back(&*store, &old).await?;
        reads_back(&*store, &other).await?;
        if collide != 0 {
            ensure!(
                store.get(new.id).await.ctx("get")?.is_none(),
                "colliding new token stored"
            );
        }
    }
    Ok(())
}

/// An unknown old id is `NotFound`, and the new token is not stored.
async fn replace_unknown_old_is_not_found(store: Arc<dyn Store>) -> Outcome {
    let new = record(deployment("d")?)?;
    ensure_matches!(
        store
            .replace(
                TokenId::generate()?,
                &StateChange::new(State::Active, State::Superseded, T0),
                &new,
                &[]
            )
            .await,
        Err(StoreError::NotFound { .. }),
        "replace of an unknown token"
    );
    ensure!(
        store.get(new.id).await.ctx("get")?.is_none(),
        "new token stored"
    );
    Ok(())
}

/// New kind data of the same kind replaces the old, returned and stored; nothing else moves.
async fn update_data_replaces_kind_data(store: Arc<dyn Store>) -> Outcome {
    let r = fixtures::full_record(secondary("ci", true)?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let data = KindData::Endpoint(EndpointData::Secondary {
        name: fixtures::name("ci (renamed); --")?,
        description: Description::parse("now with 'quotes'")?,
        enabled: false,
    });
    let got = store
        .update_data(r.id, &data, &[])
        .await
        .ctx("update_data")?;
    let expected = TokenRecord { data, ..r };
    ensure_eq!(got, expected, "returned record");
    reads_back(&*store, &expected).await?;
    let app = record(application("app")?)?;
    store.insert(&app, &[]).await.ctx("insert")?;
    let data = application("app")?; // same name, new access set and description
    let got = store
        .update_data(app.id, &data, &[])
        .await
        .ctx("update_data keeping the name")?;
    ensure_eq!(got.data, data, "application data");
    Ok(())
}

/// Data of another kind is a `Conflict`, and nothing changes.
async fn update_data_rejects_other_kind(store: Arc<dyn Store>) -> Outcome {
    let r = record(deployment("d")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    ensure_matches!(
        store.update_data(r.id, &auth("u", "a", &["p"])?, &[]).await,
        Err(StoreError::Conflict),
        "update_data with another kind"
    );
    reads_back(&*store, &r).await
}

/// An unknown id is `NotFound`.
async fn update_data_unknown_is_not_found(store: Arc<dyn Store>) -> Outcome {
    ensure_matches!(
        store
            .update_data(TokenId::generate()?, &deployment("d")?, &[])
            .await,
        Err(StoreError::NotFound { .. }),
        "update_data of an unknown id"
    );
    Ok(())
}

/// Renaming an application token to a name another token in force holds is `AlreadyExists`;
/// to a name only a revoked token holds, it succeeds.
async fn update_data_rejects_taken_application_name(store: Arc<dyn Store>) -> Outcome {
    let holder = with_name(record(application("x")?)?, "held", State::Dormant)?;
    let revoked = with_name(record(application("x")?)?, "freed", State::Revoked)?;
    let r = with_name(record(application("x")?)?, "mine", State::Active)?;
    insert_all(&*store, &[holder, revoked, r.clone()]).await?;
    ensure_matches!(
        store.update_data(r.id, &application("held")?, &[]).await,
        Err(StoreError::AlreadyExists { .. }),
        "rename to a name in force"
    );
    reads_back(&*store, &r).await?;
    let got = store
        .update_data(r.id, &application("freed")?, &[])
        .await
        .ctx("rename to a freed name")?;
    ensure_eq!(got.data, application("freed")?, "renamed data");
    Ok(())
}

/// A new digest replaces the old one in place: the old digest no longer finds the token, the
/// new one does with the new hint, and its mappings stay.
async fn set_digest_moves_lookup_and_keeps_mappings(store: Arc<dyn Store>) -> Outcome {
    let r = fixtures::full_record(secondary("ci", true)?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let m = fixtures::mapping(r.id, "/hook", Method::Post, true)?;
    store.put_mapping(&m, &[]).await.ctx("put_mapping")?;
    let (d, h) = fixtures::digest_spelled(tessera_core::Kind::Endpoint, Spelling::Plain64)?;
    let got = store
        .set_digest(r.id, &d, &h, &[])
        .await
        .ctx("set_digest")?;
    let expected = TokenRecord {
        digest: d,
        hint: h,
        sealed: None,
        ..r.clone()
    };
    ensure_eq!(got, expected, "returned record");
    ensure!(
        store.find_by_digest(&r.digest).await.ctx("find")?.is_none(),
        "old digest still finds it"
    );
    reads_back(&*store, &expected).await?;
    ensure_eq!(
        store
            .mapping(r.id, &m.endpoint, m.method)
            .await
            .ctx("mapping")?,
        Some(m),
        "mapping after set_digest"
    );
    Ok(())
}

/// A digest another token has is `AlreadyExists`, and nothing changes.
async fn set_digest_rejects_taken_digest(store: Arc<dyn Store>) -> Outcome {
    let a = record(deployment("a")?)?;
    let b = record(deployment("b")?)?;
    insert_all(&*store, &[a.clone(), b.clone()]).await?;
    ensure_matches!(
        store.set_digest(a.id, &b.digest, &b.hint, &[]).await,
        Err(StoreError::AlreadyExists { .. }),
        "set_digest to a taken digest"
    );
    reads_back(&*store, &a).await?;
    reads_back(&*store, &b).await
}

/// An unknown id is `NotFound`.
async fn set_digest_unknown_is_not_found(store: Arc<dyn Store>) -> Outcome {
    let (d, h) = digest(tessera_core::Kind::Auth)?;
    ensure_matches!(
        store.set_digest(TokenId::generate()?, &d, &h, &[]).await,
        Err(StoreError::NotFound { .. }),
        "set_digest of an unknown id"
    );
    ensure!(
        store.find_by_digest(&d).await.ctx("find")?.is_none(),
        "digest stored anyway"
    );
    Ok(())
}

/// `set_sealed` replaces the sealed secret (or drops it with `None`) and changes nothing else.
async fn set_sealed_replaces_or_drops_only_the_seal(store: Arc<dyn Store>) -> Outcome {
    let r = fixtures::full_record(deployment("sealed")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    reads_back(&*store, &r).await?;
    let other = fixtures::full_record(deployment("other")?)?;
    let fresh = other.sealed.clone();
    ensure!(fresh.is_some() && fresh != r.sealed, "fixtures seal");
    let got = store
        .set_sealed(r.id, fresh.as_ref(), &[])
        .await
        .ctx("set_sealed")?;
    let expected = TokenRecord {
        sealed: fresh,
        ..r.clone()
    };
    ensure_eq!(got, expected, "returned record");
    reads_back(&*store, &expected).await?;
    let dropped = store
        .set_sealed(r.id, None, &[])
        .await
        .ctx("set_sealed None")?;
    let expected = TokenRecord {
        sealed: None,
        ..r.clone()
    };
    ensure_eq!(dropped, expected, "record with the seal dropped");
    reads_back(&*store, &expected).await
}

/// An unknown id is `NotFound`.
async fn set_sealed_unknown_is_not_found(store: Arc<dyn Store>) -> Outcome {
    ensure_matches!(
        store.set_sealed(TokenId::generate()?, None, &[]).await,
        Err(StoreError::NotFound { .. }),
        "set_sealed of an unknown id"
    );
    Ok(())
}

/// The first touch writes the last use and says so; nothing else moves.
async fn touch_writes_first_use(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    ensure!(
        store
            .touch(r.id, at(10), Duration::seconds(60))
            .await
            .ctx("touch")?,
        "first touch did not write"
    );
    let expected = TokenRecord {
        last_used_at: Some(at(10)),
        ..r
    };
    reads_back(&*store, &expected).await
}

/// A touch less than the interval after the last use writes nothing and returns `false`.
async fn touch_coalesces_within_interval(store: Arc<dyn Store>) -> Outcome {
    let mut r = record(application("app")?)?;
    r.last_used_at = Some(at(0));
    store.insert(&r, &[]).await.ctx("insert")?;
    for secs in [0, 1, 30, 59] {
        ensure!(
            !store
                .touch(r.id, at(secs), Duration::seconds(60))
                .await
                .ctx("touch")?,
            "touch {secs} s after the last use wrote"
        );
        ensure_eq!(
            stored(&*store, r.id).await?.last_used_at,
            Some(at(0)),
            "last use"
        );
    }
    Ok(())
}

/// A touch the interval or more after the last use writes it and returns `true`.
async fn touch_writes_once_interval_passed(store: Arc<dyn Store>) -> Outcome {
    let r = record(application("app")?)?;
    store.insert(&r, &[]).await.ctx("insert")?;
    let every = Duration::seconds(60);
    ensure!(
        store.touch(r.id, at(0), every).await.ctx("touch")?,
        "first touch"
    );
    ensure!(
        store.touch(r.id, at(60), every).await.ctx("touch")?,
        "touch exactly one interval later"
    );
    ensure_eq!(
        stored(&*store, r.id).await?.last_used_at,
        Some(at(60)),
        "last use"
    );
    ensure!(
        !store.touch(r.id, at(61), every).await.ctx("touch")?,
        "touch 1 s later"
    );
    ensure!(
        store.touch(r.id, at(3_600), every).await.ctx("touch")?,
        "touch an hour later"
    );
    let expected = TokenRecord {
        last_used_at: Some(at(3_600)),
        ..r
    };
    reads_back(&*store, &expected).await
}

/// Purge removes a record with its usage, enrollments and mappings; its audit events stay.
async fn purge_removes_record_usage_enrollments_and_mappings(store: Arc<dyn Store>) -> Outcome {
    let app = record(application("app")?)?;
    let onb = fixtures::onboarding_record(UsageLimit::uses(5)?)?;
    let sec = record(secondary("s", true)?)?;
    let keep = record(secondary("keep", true)?)?;
    insert_all(
        &*store,
        &[app.clone(), onb.clone(), sec.clone(), keep.clone()],
    )
    .await?;
    let addr = ip("192.0.2.7")?;
    store
        .record_usage(app.id, &UsageSubject::Ip(addr), at(1))
        .await
        .ctx("record_usage")?;
    store
        .set_blocked(app.id, ip("192.0.2.8")?, true, &[])
        .await
        .ctx("set_blocked")?;
    let hook = endpoint("/hook")?;
    store
        .record_usage(
            sec.id,
            &UsageSubject::Endpoint(hook.clone(), Method::Get),
            at(1),
        )
        .await
        .ctx("record_usage")?;
    store
        .record_usage(
            keep.id,
            &UsageSubject::Endpoint(hook.clone(), Method::Get),
            at(1),
        )
        .await
        .ctx("record_usage")?;
    ensure_matches!(
        store
            .redeem(
                &onb.digest,
                &device("dev-1")?,
                at(2),
                &crate::RedeemEvents::NONE
            )
            .await
            .ctx("redeem")?,
        Redemption::Redeemed(_),
        "redeem"
    );
    store
        .put_mapping(&fixtures::mapping(sec.id, "/hook", Method::Get, true)?, &[])
        .await
        .ctx("put_mapping")?;
    let kept_mapping = fixtures::mapping(keep.id, "/hook", Method::Get, true)?;
    store
        .put_mapping(&kept_mapping, &[])
        .await
        .ctx("put_mapping")?;
    for r in [&app, &onb, &sec] {
        store
            .append(&fixtures::event(at(3), AuditAction::Issued).token(r.id, r.kind(), &r.hint))
            .await
            .ctx("append")?;
    }

    let n = store
        .purge(&[app.id, onb.id, sec.id], &[])
        .await
        .ctx("purge")?;
    ensure_eq!(n, 3, "purged count");
    for r in [&app, &onb, &sec] {
        ensure!(
            store.get(r.id).await.ctx("get")?.is_none(),
            "purged {} record still there",
            r.kind()
        );
        ensure!(
            store.find_by_digest(&r.digest).await.ctx("find")?.is_none(),
            "purged digest found"
        );
        ensure!(
            store.usage(r.id).await.ctx("usage")?.is_empty(),
            "purged {} usage stayed",
            r.kind()
        );
        let events = store
            .events(&crate::AuditFilter {
                token: Some(r.id),
                ..Default::default()
            })
            .await
            .ctx("events")?;
        ensure_eq!(events.len(), 1, "audit events of a purged token");
    }
    ensure!(
        store
            .enrollments(onb.id)
            .await
            .ctx("enrollments")?
            .is_empty(),
        "enrollments stayed"
    );
    ensure!(
        !store
            .is_blocked(app.id, ip("192.0.2.8")?)
            .await
            .ctx("is_blocked")?,
        "block stayed"
    );
    ensure!(
        store
            .mappings(Some(sec.id), None)
            .await
            .ctx("mappings")?
            .is_empty(),
        "mappings stayed"
    );
    ensure_eq!(
        store.mappings(None, None).await.ctx("mappings")?,
        vec![kept_mapping],
        "other mappings"
    );
    let traffic = store.endpoint_usage(&hook).await.ctx("endpoint_usage")?;
    ensure_eq!(
        traffic.iter().map(|e| e.token).collect::<Vec<_>>(),
        vec![keep.id],
        "endpoint traffic after purge"
    );
    reads_back(&*store, &keep).await
}

/// Purge counts only records that existed; unknown and already purged ids count nothing, and
/// other records stay.
async fn purge_counts_only_existing_records(store: Arc<dyn Store>) -> Outcome {
    let a = record(deployment("a")?)?;
    let mut tomb = record(deployment("b")?)?;
    tomb.state = State::Deleted;
    let c = record(deployment("c")?)?;
    insert_all(&*store, &[a.clone(), tomb.clone(), c.clone()]).await?;
    ensure_eq!(
        store.purge(&[], &[]).await.ctx("purge")?,
        0,
        "purge of nothing"
    );
    ensure_eq!(
        store
            .purge(&[a.id, TokenId::generate()?, tomb.id], &[])
            .await
            .ctx("purge")?,
        2,
        "purge of two records and an unknown id"
    );
    ensure_eq!(
        store.purge(&[a.id, tomb.id], &[]).await.ctx("purge")?,
        0,
        "purge again"
    );
    ensure_eq!(
        store.list(&TokenFilter::default()).await.ctx("list")?,
        vec![c],
        "records left"
    );
    Ok(())
}

/// After a purge, the digest and the application name can be used by a new record.
async fn purge_frees_digest_and_application_name(store: Arc<dyn Store>) -> Outcome {
    let old = record(application("reused")?)?;
    store.insert(&old, &[]).await.ctx("insert")?;
    ensure_eq!(store.purge(&[old.id], &[]).await.ctx("purge")?, 1, "purged");
    let mut new = record(application("reused")?)?;
    new.digest = old.digest;
    store.insert(&new, &[]).await.ctx("insert after purge")?;
    reads_back(&*store, &new).await?;
    let mut same_id = record(deployment("d")?)?;
    same_id.id = old.id;
    store
        .insert(&same_id, &[])
        .await
        .ctx("insert of a purged id")
}
