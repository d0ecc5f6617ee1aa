//! `tessera pepper ...`: rotate the pepper (a new current key, older ones kept for
//! validation), see which key ids tokens depend on, and retire a key nothing needs.

use std::collections::BTreeMap;

use serde_json::json;
use tessera::core::digest::{KeyId, Pepper};
use tessera::core::record::TokenRecord;
use tessera::store::TokenFilter;

use crate::cli::{Global, PepperCmd};
use crate::cmd::general::state_rejection;
use crate::context::{self, Backend, Ctx, PEPPER_ENV, create_new_private, parse_keys};
use crate::error::{CliError, Result};

/// Run a pepper command.
pub(crate) async fn run(g: &Global, cmd: PepperCmd) -> Result<()> {
    match cmd {
        PepperCmd::Status => {
            let ctx = Ctx::open(g, None).await?;
            status(&ctx).await
        }
        PepperCmd::Rotate => {
            let path = key_file(g)?;
            let mut keys = read(&path)?;
            let next = keys.iter().map(|k| k.id().0).max().unwrap_or(0) + 1;
            keys.insert(0, Pepper::generate(KeyId(next))?);
            write(&path, &keys)?;
            let ctx = Ctx::open(g, None).await?;
            let report = ctx.service.reseal().await?;
            ctx.out.result(
                &format!(
                    "key id {next} is now current in {}; older keys stay for validation; re-sealed {} sealed secret(s) under it{}. Tokens digested under an older key keep working until they are rotated or end; `tessera pepper status` shows which, `tessera pepper retire ID` drops a key nothing needs",
                    path.display(),
                    report.resealed.len(),
                    if report.unreadable.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " ({} could not be opened: their key is no longer configured)",
                            report.unreadable.len()
                        )
                    }
                ),
                &json!({
                    "current": next,
                    "resealed": report.resealed,
                    "unreadable": report.unreadable,
                }),
            )
        }
        PepperCmd::Retire { id, force } => {
            let path = key_file(g)?;
            let keys = read(&path)?;
            let id = KeyId(id);
            if keys.first().is_some_and(|k| k.id() == id) {
                return Err(CliError::usage(format!(
                    "key id {} is the current key; rotate first (`tessera pepper rotate`)",
                    id.0
                )));
            }
            if !keys.iter().any(|k| k.id() == id) {
                return Err(CliError::not_found(format!(
                    "no key id {} in {}",
                    id.0,
                    path.display()
                )));
            }
            let ctx = Ctx::open(g, None).await?;
            let needing = needs(&ctx, id).await?;
            if !needing.is_empty() && force {
                ctx.out.confirm(&format!(
                    "retire key id {} although {} token(s) in force depend on it? they stop working",
                    id.0,
                    needing.len()
                ))?;
            }
            if !needing.is_empty() && !force {
                return Err(CliError::usage(format!(
                    "{} token(s) in force depend on key id {} (digest or sealed secret), e.g. {}; rotate them (`tessera rotate ID`), revoke them, or wait for them to end; --force retires the key anyway and they stop working",
                    needing.len(),
                    id.0,
                    needing[0]
                )));
            }
            let kept: Vec<Pepper> = keys.into_iter().filter(|k| k.id() != id).collect();
            write(&path, &kept)?;
            ctx.out.result(
                &format!("retired key id {} from {}", id.0, path.display()),
                &json!({ "retired": id.0, "tokens_cut_off": needing }),
            )
        }
    }
}

/// The key file rotation edits; with `TESSERA_PEPPER` the keys live elsewhere.
fn key_file(g: &Global) -> Result<std::path::PathBuf> {
    if context::pepper_from_env()?.is_some() {
        return Err(CliError::usage(format!(
            "the pepper comes from {PEPPER_ENV}: rotate it there, as `NEWID:NEWHEX,OLDID:OLDHEX` (the new key first; `tessera pepper status` shows the key ids in use)"
        )));
    }
    context::key_path(g, &Backend::from_global(g)?)
}

fn read(path: &std::path::Path) -> Result<Vec<Pepper>> {
    let text = context::read_key_file(path)?;
    parse_keys(&text).map_err(|e| CliError::usage(format!("key file {}: {e}", path.display())))
}

/// Write the keys, current first, as `ID:HEX` lines: a new file beside the old one (mode
/// 0600), synced, then renamed over it, so a crash leaves the old file or the new one whole.
fn write(path: &std::path::Path, keys: &[Pepper]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("key.new");
    let _ = std::fs::remove_file(&tmp);
    let mut text = zeroize::Zeroizing::new(String::new());
    for k in keys {
        text.push_str(&format!("{}:{}\n", k.id().0, k.expose_hex()));
    }
    let fail = |e: std::io::Error| {
        CliError::failure(format!("cannot write the key file {}: {e}", path.display()))
    };
    let mut f = create_new_private(&tmp).map_err(fail)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

/// Whether a token may still be accepted or come back (not revoked, deleted, expired or
/// rotated out).
fn in_force(ctx: &Ctx, r: &TokenRecord) -> bool {
    use tessera::core::lifecycle::State;
    let state = r.summary(ctx.now()).state;
    state_rejection(state).is_none() || matches!(state, State::Disabled | State::Dormant)
}

/// The tokens in force whose digest or sealed secret is under `id`.
async fn needs(ctx: &Ctx, id: KeyId) -> Result<Vec<String>> {
    Ok(ctx
        .store()
        .list(&TokenFilter::default())
        .await?
        .iter()
        .filter(|r| in_force(ctx, r))
        .filter(|r| r.digest.key() == id || r.sealed.as_ref().is_some_and(|s| s.key() == id))
        .map(|r| r.id.to_string())
        .collect())
}

/// `tessera pepper status`: per key id, whether it is configured and current, and how many
/// tokens in force depend on it.
async fn status(ctx: &Ctx) -> Result<()> {
    let mut digests: BTreeMap<u32, usize> = BTreeMap::new();
    let mut sealed: BTreeMap<u32, usize> = BTreeMap::new();
    for r in ctx.store().list(&TokenFilter::default()).await? {
        if !in_force(ctx, &r) {
            continue;
        }
        *digests.entry(r.digest.key().0).or_default() += 1;
        if let Some(s) = &r.sealed {
            *sealed.entry(s.key().0).or_default() += 1;
        }
    }
    let current = ctx.peppers.current().id().0;
    let configured: Vec<u32> = ctx.peppers.all().map(|p| p.id().0).collect();
    let mut ids: Vec<u32> = configured.clone();
    ids.extend(digests.keys().chain(sealed.keys()).copied());
    ids.sort_unstable();
    ids.dedup();
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for id in ids {
        let role = if id == current {
            "current"
        } else if configured.contains(&id) {
            "previous"
        } else {
            "missing"
        };
        let (d, s) = (
            digests.get(&id).copied().unwrap_or(0),
            sealed.get(&id).copied().unwrap_or(0),
        );
        rows.push(vec![
            id.to_string(),
            role.to_owned(),
            d.to_string(),
            s.to_string(),
        ]);
        json.push(json!({ "key_id": id, "role": role, "digests": d, "sealed": s }));
    }
    ctx.out.listing(
        &["KEY ID", "ROLE", "TOKENS IN FORCE", "SEALED"],
        &rows,
        &serde_json::Value::Array(json),
        "no keys",
    )
}
