//! Endpoint mappings: secondaries mapped to an endpoint's primary slot per method.

use std::sync::Arc;

use tessera_core::id::TokenId;
use tessera_core::kind::endpoint::{Mapping, Method};

use super::fixtures::{endpoint, mapping, record, secondary};
use super::records::insert_all;
use super::{Case, Context, Outcome};
use crate::{Store, StoreError};

pub(super) fn cases() -> Vec<Case> {
    cases![
        put_mapping_then_mapping_returns_it,
        put_mapping_rejects_duplicate,
        put_mapping_unknown_secondary_is_not_found,
        mapping_unknown_is_none,
        set_mapping_enabled_toggles,
        set_mapping_enabled_unknown_is_not_found,
        remove_mapping_removes_only_that_mapping,
        remove_mapping_unknown_is_not_found,
        mappings_filter_by_secondary_and_endpoint,
    ]
}

fn sorted(mut v: Vec<Mapping>) -> Vec<Mapping> {
    v.sort_by(|a, b| {
        (a.secondary, &a.endpoint, a.method).cmp(&(b.secondary, &b.endpoint, b.method))
    });
    v
}

/// A stored mapping reads back exactly, enabled or not.
async fn put_mapping_then_mapping_returns_it(store: Arc<dyn Store>) -> Outcome {
    let s = record(secondary("ci", true)?)?;
    store.insert(&s, &[]).await.ctx("insert")?;
    let on = mapping(s.id, "/api/hooks/build?x='1';--", Method::Post, true)?;
    let off = mapping(s.id, "/api/hooks/build?x='1';--", Method::Delete, false)?;
    store.put_mapping(&on, &[]).await.ctx("put_mapping")?;
    store.put_mapping(&off, &[]).await.ctx("put_mapping")?;
    for m in [&on, &off] {
        ensure_eq!(
            store
                .mapping(s.id, &m.endpoint, m.method)
                .await
                .ctx("mapping")?,
            Some(m.clone()),
            "mapping"
        );
    }
    Ok(())
}

/// Mapping the same secondary to the same endpoint and method again is `AlreadyExists`, and
/// the first mapping is unchanged.
async fn put_mapping_rejects_duplicate(store: Arc<dyn Store>) -> Outcome {
    let s = record(secondary("ci", true)?)?;
    store.insert(&s, &[]).await.ctx("insert")?;
    let m = mapping(s.id, "/hook", Method::Get, true)?;
    store.put_mapping(&m, &[]).await.ctx("put_mapping")?;
    for enabled in [true, false] {
        ensure_matches!(
            store
                .put_mapping(
                    &Mapping {
                        enabled,
                        ..m.clone()
                    },
                    &[]
                )
                .await,
            Err(StoreError::AlreadyExists { .. }),
            "second put_mapping (enabled: {enabled})"
        );
    }
    ensure_eq!(
        store
            .mapping(s.id, &m.endpoint, m.method)
            .await
            .ctx("mapping")?,
        Some(m),
        "mapping"
    );
    Ok(())
}

/// Mapping a secondary that does not exist is `NotFound`, and nothing is stored.
async fn put_mapping_unknown_secondary_is_not_found(store: Arc<dyn Store>) -> Outcome {
    let m = mapping(TokenId::generate()?, "/hook", Method::Get, true)?;
    ensure_matches!(
        store.put_mapping(&m, &[]).await,
        Err(StoreError::NotFound { .. }),
        "put_mapping of an unknown secondary"
    );
    ensure!(
        store.mappings(None, None).await.ctx("mappings")?.is_empty(),
        "mapping stored anyway"
    );
    Ok(())
}

/// A mapping that was never made reads as `None`: keys match exactly (case and trailing slash
/// matter).
async fn mapping_unknown_is_none(store: Arc<dyn Store>) -> Outcome {
    let s = record(secondary("ci", true)?)?;
    store.insert(&s, &[]).await.ctx("insert")?;
    store
        .put_mapping(&mapping(s.id, "/hook", Method::Get, true)?, &[])
        .await
        .ctx("put_mapping")?;
    let misses = [
        (TokenId::generate()?, endpoint("/hook")?, Method::Get),
        (s.id, endpoint("/hook")?, Method::Post),
        (s.id, endpoint("/HOOK")?, Method::Get),
        (s.id, endpoint("/hook/")?, Method::Get),
        (s.id, endpoint("/hoo")?, Method::Get),
    ];
    for (id, e, m) in &misses {
        ensure!(
            store.mapping(*id, e, *m).await.ctx("mapping")?.is_none(),
            "found a mapping for ({id}, {e}, {m})"
        );
    }
    Ok(())
}

/// Turning a mapping off and on returns and stores it so, leaving other mappings alone.
async fn set_mapping_enabled_toggles(store: Arc<dyn Store>) -> Outcome {
    let s = record(secondary("ci", true)?)?;
    store.insert(&s, &[]).await.ctx("insert")?;
    let m = mapping(s.id, "/hook", Method::Get, true)?;
    let other = mapping(s.id, "/hook", Method::Post, true)?;
    store.put_mapping(&m, &[]).await.ctx("put_mapping")?;
    store.put_mapping(&other, &[]).await.ctx("put_mapping")?;
    for enabled in [false, false, true] {
        let got = store
            .set_mapping_enabled(s.id, &m.endpoint, m.method, enabled, &[])
            .await
            .ctx("toggle")?;
        let expected = Mapping {
            enabled,
            ..m.clone()
        };
        ensure_eq!(got, expected, "returned mapping");
        ensure_eq!(
            store
                .mapping(s.id, &m.endpoint, m.method)
                .await
                .ctx("mapping")?,
            Some(expected),
            "stored"
        );
    }
    ensure_eq!(
        store
            .mapping(s.id, &other.endpoint, other.method)
            .await
            .ctx("mapping")?,
        Some(other),
        "other"
    );
    Ok(())
}

/// Toggling a mapping that does not exist is `NotFound`, and creates nothing.
async fn set_mapping_enabled_unknown_is_not_found(store: Arc<dyn Store>) -> Outcome {
    let s = record(secondary("ci", true)?)?;
    store.insert(&s, &[]).await.ctx("insert")?;
    ensure_matches!(
        store
            .set_mapping_enabled(s.id, &endpoint("/hook")?, Method::Get, true, &[])
            .await,
        Err(StoreError::NotFound { .. }),
        "toggle of an unknown mapping"
    );
    ensure!(
        store.mappings(None, None).await.ctx("mappings")?.is_empty(),
        "mapping created"
    );
    Ok(())
}

/// Removing a mapping removes that one only; it can then be made again.
async fn remove_mapping_removes_only_that_mapping(store: Arc<dyn Store>) -> Outcome {
    let s = record(secondary("ci", true)?)?;
    store.insert(&s, &[]).await.ctx("insert")?;
    let m = mapping(s.id, "/hook", Method::Get, true)?;
    let other = mapping(s.id, "/hook", Method::Post, false)?;
    store.put_mapping(&m, &[]).await.ctx("put_mapping")?;
    store.put_mapping(&other, &[]).await.ctx("put_mapping")?;
    store
        .remove_mapping(s.id, &m.endpoint, m.method, &[])
        .await
        .ctx("remove_mapping")?;
    ensure!(
        store
            .mapping(s.id, &m.endpoint, m.method)
            .await
            .ctx("mapping")?
            .is_none(),
        "still there"
    );
    ensure_eq!(
        store.mappings(None, None).await.ctx("mappings")?,
        vec![other],
        "mappings left"
    );
    ensure_matches!(
        store.remove_mapping(s.id, &m.endpoint, m.method, &[]).await,
        Err(StoreError::NotFound { .. }),
        "second remove"
    );
    store.put_mapping(&m, &[]).await.ctx("put_mapping again")?;
    ensure_eq!(
        store
            .mapping(s.id, &m.endpoint, m.method)
            .await
            .ctx("mapping")?,
        Some(m),
        "made again"
    );
    Ok(())
}

/// Removing a mapping that does not exist is `NotFound`.
async fn remove_mapping_unknown_is_not_found(store: Arc<dyn Store>) -> Outcome {
    ensure_matches!(
        store
            .remove_mapping(TokenId::generate()?, &endpoint("/hook")?, Method::Get, &[])
            .await,
        Err(StoreError::NotFound { .. }),
        "remove of an unknown mapping"
    );
    Ok(())
}

/// Listing narrows to one secondary, one endpoint, both or neither.
async fn mappings_filter_by_secondary_and_endpoint(store: Arc<dyn Store>) -> Outcome {
    let s1 = record(secondary("one", true)?)?;
    let s2 = record(secondary("two", true)?)?;
    let s3 = record(secondary("three", false)?)?;
    insert_all(&*store, &[s1.clone(), s2.clone(), s3.clone()]).await?;
    let all = vec![
        mapping(s1.id, "/e", Method::Get, true)?,
        mapping(s1.id, "/e", Method::Post, false)?,
        mapping(s1.id, "/f", Method::Get, true)?,
        mapping(s2.id, "/e", Method::Get, true)?,
        mapping(s3.id, "/f", Method::Delete, true)?,
        mapping(s3.id, "/E", Method::Delete, true)?,
    ];
    for m in &all {
        store.put_mapping(m, &[]).await.ctx("put_mapping")?;
    }
    let e = endpoint("/e")?;
    let f = endpoint("/f")?;
    let none = endpoint("/none")?;
    let queries = [
        (None, None),
        (Some(s1.id), None),
        (Some(s3.id), None),
        (Some(TokenId::generate()?), None),
        (None, Some(&e)),
        (None, Some(&f)),
        (None, Some(&none)),
        (Some(s1.id), Some(&e)),
        (Some(s2.id), Some(&f)),
        (Some(s3.id), Some(&f)),
    ];
    for (sec, ep) in queries {
        let expected: Vec<_> = all
            .iter()
            .filter(|m| sec.is_none_or(|s| m.secondary == s) && ep.is_none_or(|x| &m.endpoint == x))
            .cloned()
            .collect();
        let got = store.mappings(sec, ep).await.ctx("mappings")?;
        ensure_eq!(sorted(got), sorted(expected), "mappings({sec:?}, {ep:?})");
    }
    Ok(())
}
