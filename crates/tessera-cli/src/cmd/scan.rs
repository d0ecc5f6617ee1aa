//! `tessera scan`: find leaked Tessera tokens in text by prefix and checksum.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tessera::core::format;
use tessera::core::id::TokenId;
use tessera::core::kind::KindData;
use tessera::core::record::TokenRecord;

use crate::cli::{Global, ScanArgs};
use crate::cmd::general::revoke_records;
use crate::context::Ctx;
use crate::error::{CliError, Result};
use crate::output::{self, Out};

/// One token found in the text.
#[derive(Debug)]
struct Finding {
    source: String,
    line: usize,
    column: usize,
    kind: tessera::Kind,
    hint: String,
    /// The stored record, when the database knows the token.
    record: Option<TokenRecord>,
}

/// Scan files (directories recursively, skipping `.git`) or standard input.
pub(crate) async fn run(g: &Global, args: ScanArgs) -> Result<()> {
    let out = Out::new(g);
    let ctx = if args.offline {
        None
    } else {
        Some(Ctx::open(g, None).await?)
    };
    let mut sources = Vec::new();
    if args.files.is_empty() {
        sources.push(PathBuf::from("-"));
    } else {
        for f in &args.files {
            collect(f, &mut sources)?;
        }
    }
    let mut findings = Vec::new();
    for path in &sources {
        let (name, bytes) = read_source(path)?;
        let text = String::from_utf8_lossy(&bytes);
        for (offset, presented) in format::scan(&text) {
            let (line, column) = position(&text, offset);
            let record = match &ctx {
                Some(c) => c.find_presented(&presented).await?,
                None => None,
            };
            findings.push(Finding {
                source: name.clone(),
                line,
                column,
                kind: presented.kind(),
                hint: presented.hint().to_string(),
                record,
            });
        }
    }
    let now = ctx.as_ref().map(Ctx::now);
    let state = |f: &Finding| match (&f.record, now) {
        (Some(r), Some(now)) => r.effective_state(now).to_string(),
        _ if args.offline => String::from("-"),
        _ => String::from("unknown"),
    };
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            vec![
                f.source.clone(),
                f.line.to_string(),
                f.column.to_string(),
                f.kind.to_string(),
                f.hint.clone(),
                state(f),
                f.record
                    .as_ref()
                    .map_or_else(|| String::from("-"), |r| r.id.to_string()),
            ]
        })
        .collect();
    let findings_json: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "file": f.source,
                "line": f.line,
                "column": f.column,
                "kind": f.kind,
                "hint": f.hint,
                "state": if args.offline { Value::Null } else { Value::from(state(f)) },
                "id": f.record.as_ref().map(|r| r.id),
            })
        })
        .collect();
    let mut revoked_json = Vec::new();
    let revoke_ctx = ctx.as_ref().filter(|_| args.revoke);
    if !out.json {
        if rows.is_empty() {
            out.print("no Tessera tokens found")?;
        } else {
            out.print(&output::table(
                &["FILE", "LINE", "COL", "KIND", "HINT", "STATE", "ID"],
                &rows,
            ))?;
        }
    }
    if let Some(ctx) = revoke_ctx {
        revoked_json = revoke_found(ctx, &findings).await?;
    }
    if out.json {
        out.json(&json!({ "findings": findings_json, "revoked": revoked_json }))?;
    }
    if findings.is_empty() {
        Ok(())
    } else {
        Err(CliError::TokensFound(findings.len()))
    }
}

/// Revoke the known tokens found that can still be revoked, after confirmation.
async fn revoke_found(ctx: &Ctx, findings: &[Finding]) -> Result<Vec<Value>> {
    let mut unique: BTreeMap<TokenId, &TokenRecord> = BTreeMap::new();
    for f in findings {
        if let Some(r) = &f.record {
            if !r.state.is_terminal() {
                unique.insert(r.id, r);
            }
        }
    }
    let p = &ctx.principal;
    let (allowed, skipped): (Vec<&TokenRecord>, Vec<&TokenRecord>) =
        unique.into_values().partition(|r| match &r.data {
            KindData::Auth(a) => p.is_admin() || &a.owner == p.id(),
            _ => true,
        });
    for r in &skipped {
        eprintln!(
            "skipped auth token {} ({}): it belongs to another user; pass --admin to revoke it",
            r.id, r.hint
        );
    }
    if allowed.is_empty() {
        if !ctx.out.json {
            ctx.out
                .print("nothing to revoke: no token found is known and still revocable")?;
        }
        return Ok(Vec::new());
    }
    let list: Vec<String> = allowed
        .iter()
        .map(|r| format!("{} {} ({})", r.kind(), r.id, r.hint))
        .collect();
    ctx.out.confirm(&format!(
        "revoke {} leaked token(s) for good: {}?",
        allowed.len(),
        list.join(", ")
    ))?;
    let records: Vec<TokenRecord> = allowed.into_iter().cloned().collect();
    let done = revoke_records(ctx, &records).await?;
    if !ctx.out.json {
        for t in &done {
            ctx.out
                .print(&format!("revoked {} token {} ({})", t.kind, t.id, t.hint))?;
        }
    }
    Ok(done.iter().map(output::summary_json).collect())
}

/// Files under `path`: itself, or every file below a directory except `.git`.
fn collect(path: &Path, into: &mut Vec<PathBuf>) -> Result<()> {
    if path.as_os_str() == "-" {
        into.push(path.to_owned());
        return Ok(());
    }
    let meta = std::fs::metadata(path).map_err(|e| {
        CliError::usage(format!(
            "cannot read {}: {e}; check the path",
            path.display()
        ))
    })?;
    if !meta.is_dir() {
        into.push(path.to_owned());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| CliError::usage(format!("cannot list {}: {e}", path.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for e in entries {
        if e.file_name().is_some_and(|n| n == ".git") {
            continue;
        }
        let is_dir = std::fs::symlink_metadata(&e)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if is_dir {
            collect(&e, into)?;
        } else if std::fs::symlink_metadata(&e).is_ok_and(|m| m.is_file()) {
            into.push(e);
        }
    }
    Ok(())
}

fn read_source(path: &Path) -> Result<(String, Vec<u8>)> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::usage(format!("cannot read standard input: {e}")))?;
        return Ok((String::from("<stdin>"), bytes));
    }
    bytes = std::fs::read(path).map_err(|e| {
        CliError::usage(format!(
            "cannot read {}: {e}; check the path",
            path.display()
        ))
    })?;
    Ok((path.display().to_string(), bytes))
}

/// 1-based line and column (in characters) of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let t = "ab\ncd tsr_x";
        assert_eq!(position(t, 0), (1, 1));
        assert_eq!(position(t, 6), (2, 4));
    }
}
