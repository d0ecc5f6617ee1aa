//! Commands every kind shares: list, show, rotate, revoke, sweep, audit, verify.

use serde_json::{Value, json};
use tessera::Rejection;
use tessera::core::Kind;
use tessera::core::audit::{Actor, AuditAction, AuditEvent};
use tessera::core::id::{TokenId, UserId};
use tessera::core::kind::KindData;
use tessera::core::kind::application::InactivityPolicy;
use tessera::core::lifecycle::State;
use tessera::core::record::{TokenRecord, TokenSummary};
use tessera::store::{AuditFilter, TokenFilter};

use crate::cli::{AuditArgs, Global, KindArg, ListArgs, StateArg, SweepArgs};
use crate::cmd::deployment::rejected_json;
use crate::context::{Ctx, parse_any_spelling, read_token};
use crate::error::{CliError, Result};
use crate::output::{self, opt_time, summary_json, summary_with, uses};
use crate::parse;

/// The rejection a token in `state` gets, or `None` when it is in force.
pub(crate) const fn state_rejection(state: State) -> Option<Rejection> {
    Some(match state {
        State::Active | State::Superseded => return None,
        State::Disabled => Rejection::Disabled,
        State::Dormant => Rejection::Dormant,
        State::RotatedOut => Rejection::RotatedOut,
        State::Expired => Rejection::Expired,
        State::Exhausted => Rejection::Exhausted,
        State::Revoked => Rejection::Revoked,
        State::Deleted => Rejection::Deleted,
    })
}

const fn state_of(s: StateArg) -> State {
    match s {
        StateArg::Active => State::Active,
        StateArg::Disabled => State::Disabled,
        StateArg::Dormant => State::Dormant,
        StateArg::Superseded => State::Superseded,
        StateArg::RotatedOut => State::RotatedOut,
        StateArg::Expired => State::Expired,
        StateArg::Exhausted => State::Exhausted,
        StateArg::Revoked => State::Revoked,
        StateArg::Deleted => State::Deleted,
    }
}

const fn kind_of(k: KindArg) -> Kind {
    match k {
        KindArg::Deployment => Kind::Deployment,
        KindArg::Onboarding => Kind::Onboarding,
        KindArg::Endpoint => Kind::Endpoint,
        KindArg::Auth => Kind::Auth,
        KindArg::Application => Kind::Application,
    }
}

/// What a record is about beyond its summary: the owner, the endpoint, the group.
fn detail(r: &TokenRecord) -> String {
    match &r.data {
        KindData::Deployment(d) => {
            if d.auto_renew {
                "auto-renew".into()
            } else {
                String::new()
            }
        }
        KindData::Onboarding(o) => format!("policy {} group {}", o.policy, o.group),
        KindData::Endpoint(tessera::core::kind::EndpointData::Primary { endpoint, method }) => {
            format!("primary {method} {endpoint}")
        }
        KindData::Endpoint(tessera::core::kind::EndpointData::Secondary { enabled, .. }) => {
            format!("secondary{}", if *enabled { "" } else { " (toggled off)" })
        }
        KindData::Auth(a) => format!("owner {}", a.owner),
        KindData::Application(a) => format!("application {}", a.name),
    }
}

/// `tessera list`: tokens of every kind. Auth tokens of other users show only to admins.
pub(crate) async fn list(ctx: &Ctx, args: ListArgs) -> Result<()> {
    let mut filter = TokenFilter::default();
    if let Some(k) = args.kind {
        filter = filter.kind(kind_of(k));
    }
    let now = ctx.now();
    let expiring = args
        .expiring
        .as_deref()
        .map(|d| parse::duration("--expiring", d))
        .transpose()?;
    if let Some(d) = expiring {
        filter = filter
            .states([State::Active, State::Superseded])
            .expires_before(now + d);
    }
    let want = args.state.map(state_of);
    let p = &ctx.principal;
    let mut rows = Vec::new();
    let mut json = Vec::new();
    for r in ctx.store().list(&filter).await? {
        if let KindData::Auth(a) = &r.data {
            if !p.is_admin() && &a.owner != p.id() {
                continue;
            }
        }
        let mut t = ctx.service.summary(&r, now);
        if args.active && state_rejection(t.state).is_some() {
            continue;
        }
        if want.is_some_and(|w| t.state != w) {
            continue;
        }
        // Deleted tokens are gone for the console: shown only when asked for.
        if t.state == State::Deleted && !args.all && want != Some(State::Deleted) {
            continue;
        }
        // Expiring: still in force now, and ending within the window.
        if expiring.is_some()
            && (state_rejection(t.state).is_some() || t.expires_at.is_none_or(|e| e <= now))
        {
            continue;
        }
        if r.kind() == Kind::Application {
            t.uses = app_uses(ctx, r.id).await?;
        }
        let d = detail(&r);
        rows.push(vec![
            t.id.to_string(),
            t.kind.to_string(),
            t.name.clone().unwrap_or_else(|| String::from("-")),
            output::state_word(t.state).to_owned(),
            opt_time(t.expires_at),
            opt_time(t.last_used_at),
            output::cut(&d, 40),
            t.hint.clone(),
        ]);
        json.push(summary_with(&t, json!({ "detail": d, "data": r.data })));
    }
    ctx.out.listing(
        &[
            "ID",
            "KIND",
            "NAME",
            "STATE",
            "EXPIRES",
            "LAST USED",
            "DETAIL",
            "HINT",
        ],
        &rows,
        &Value::Array(json),
        "no tokens",
    )
}

/// An application token's uses: the sum of its IP log, as `app ips` shows it.
async fn app_uses(ctx: &Ctx, id: TokenId) -> Result<u64> {
    let log = ctx.service.application().ips(id).await?;
    Ok(log.iter().map(|u| u.count).sum())
}

/// `tessera show ID`.
pub(crate) async fn show(ctx: &Ctx, id: &str) -> Result<()> {
    let id = ctx.resolve_id(id).await?;
    let r = ctx.record(id).await?;
    let p = &ctx.principal;
    if let KindData::Auth(a) = &r.data {
        if !p.is_admin() && &a.owner != p.id() {
            return Err(CliError::not_found(
                "permission denied: only the token's owner or an administrator can see it",
            ));
        }
    }
    let mut t = ctx.service.summary(&r, ctx.now());
    // An application token's uses are its IP log's, as `app ips` counts them: one count.
    let mut uses_text = uses(&t);
    if r.kind() == Kind::Application {
        t.uses = app_uses(ctx, id).await?;
        uses_text = format!("{} (per address: `tessera app ips {id}`)", t.uses);
    }
    let mut lines = vec![
        ("id", t.id.to_string()),
        ("kind", t.kind.to_string()),
        ("name", t.name.clone().unwrap_or_else(|| String::from("-"))),
        ("state", output::state_word(t.state).to_owned()),
        ("hint", t.hint.clone()),
        ("created", output::time(t.created_at)),
        ("created by", r.created_by.to_string()),
        ("expires", opt_time(t.expires_at)),
        ("last used", opt_time(t.last_used_at)),
        ("uses", uses_text),
        ("detail", detail(&r)),
    ];
    if let Some(g) = &t.generated_by {
        lines.push(("generated by", g.to_string()));
    }
    if let Some(s) = r.successor {
        lines.push(("successor", s.to_string()));
    }
    if let Some(g) = r.grace_until {
        lines.push(("grace until", output::time(g)));
    }
    let human: Vec<String> = lines.iter().map(|(k, v)| format!("{k:<12}  {v}")).collect();
    ctx.out.result(
        &human.join("\n"),
        &summary_with(
            &t,
            json!({
                "created_by": r.created_by,
                "successor": r.successor,
                "grace_until": r.grace_until.map(output::rfc3339),
                "data": r.data,
            }),
        ),
    )
}

/// Refuse an action on another user's auth token unless admin (the facade checks this for
/// auth-specific calls; shared calls such as rotate need it here).
fn check_auth_owner(ctx: &Ctx, r: &TokenRecord) -> Result<()> {
    if let KindData::Auth(a) = &r.data {
        let p = &ctx.principal;
        if !p.is_admin() && &a.owner != p.id() {
            return Err(CliError::not_found(
                "permission denied: only the token's owner or an administrator can manage it; pass --admin",
            ));
        }
    }
    Ok(())
}

/// `tessera rotate ID [--grace D]`.
pub(crate) async fn rotate(ctx: &Ctx, id: &str, grace: Option<&str>) -> Result<()> {
    let id = ctx.resolve_id(id).await?;
    let r = ctx.record(id).await?;
    check_auth_owner(ctx, &r)?;
    if matches!(
        r.data,
        KindData::Endpoint(tessera::core::kind::EndpointData::Secondary { .. })
    ) {
        return Err(CliError::usage(format!(
            "secondary endpoint tokens keep their id and mappings: use `tessera endpoint secondary regenerate {id}`"
        )));
    }
    let grace = grace.map(|g| parse::duration("--grace", g)).transpose()?;
    let when = match grace {
        Some(g) => format!("keeps working for {g}"),
        None => String::from("stops working at once"),
    };
    ctx.out.confirm(&format!(
        "rotate {} token {id} ({})? the old token {when}",
        r.kind(),
        r.hint
    ))?;
    let issued = ctx.service.rotate(id, grace, &ctx.principal).await?;
    ctx.out.issued(
        &format!("{} token (successor of {id})", r.kind()),
        &issued,
        &[("replaces", Value::from(id.to_string()))],
    )
}

/// `tessera revoke ID...`.
pub(crate) async fn revoke(ctx: &Ctx, ids: &[String]) -> Result<()> {
    let mut records = Vec::new();
    for id in ids {
        let id = ctx.resolve_id(id).await?;
        let r = ctx.record(id).await?;
        check_auth_owner(ctx, &r)?;
        records.push(r);
    }
    let list: Vec<String> = records
        .iter()
        .map(|r| format!("{} {} ({})", r.kind(), r.id, r.hint))
        .collect();
    ctx.out.confirm(&format!(
        "revoke {} token(s) for good: {}?",
        records.len(),
        list.join(", ")
    ))?;
    let done = revoke_records(ctx, &records).await?;
    let human: Vec<String> = done
        .iter()
        .map(|t| format!("revoked {} token {} ({})", t.kind, t.id, t.hint))
        .collect();
    ctx.out.result(
        &human.join("\n"),
        &Value::Array(done.iter().map(summary_json).collect()),
    )
}

/// Revoke records, through the auth rules for auth tokens.
pub(crate) async fn revoke_records(
    ctx: &Ctx,
    records: &[TokenRecord],
) -> Result<Vec<TokenSummary>> {
    let mut done = Vec::new();
    for r in records {
        let t = match r.kind() {
            Kind::Auth => ctx.service.auth().revoke(r.id, &ctx.principal).await?,
            _ => ctx.service.revoke(r.id, &ctx.principal).await?,
        };
        done.push(t);
    }
    Ok(done)
}

/// `tessera sweep [--dry-run]`.
pub(crate) async fn sweep(g: &Global, args: SweepArgs) -> Result<()> {
    let dormant = parse::duration("--dormant-after", &args.dormant_after)?;
    let delete = parse::duration("--delete-after", &args.delete_after)?;
    let policy = InactivityPolicy::new(dormant, delete).map_err(|_| {
        CliError::usage("--dormant-after must be above zero and below --delete-after")
    })?;
    let ctx = Ctx::open(g, Some(policy)).await?;
    let report = ctx.service.sweep(args.dry_run).await?;
    let verb = |done: &'static str, would: &'static str| if args.dry_run { would } else { done };
    let mut rows = Vec::new();
    let mut push = |what: &str, ids: &[TokenId], detail: &str| {
        for id in ids {
            rows.push(vec![what.to_owned(), id.to_string(), detail.to_owned()]);
        }
    };
    push(verb("expired", "would expire"), &report.expired, "");
    push(
        verb("retired", "would retire"),
        &report.retired,
        "grace window ended",
    );
    push(
        verb("dormant", "would go dormant"),
        &report.dormant,
        "unused too long",
    );
    push(
        verb("deleted", "would delete"),
        &report.deleted,
        "unused too long",
    );
    let mut renewed_json = Vec::new();
    for r in &report.renewed {
        let successor = r.successor.as_ref().map(|s| s.id.to_string());
        rows.push(vec![
            verb("renewed", "would renew").to_owned(),
            r.expired.to_string(),
            successor
                .as_ref()
                .map_or_else(String::new, |s| format!("successor {s}")),
        ]);
        renewed_json.push(json!({
            "expired": r.expired,
            "successor": r.successor,
        }));
    }
    let json = json!({
        "dry_run": report.dry_run,
        "expired": report.expired,
        "retired": report.retired,
        "dormant": report.dormant,
        "deleted": report.deleted,
        "renewed": renewed_json,
    });
    if ctx.out.json {
        ctx.out.json(&json)?;
    } else if rows.is_empty() {
        ctx.out.print(if args.dry_run {
            "nothing would change"
        } else {
            "nothing to do"
        })?;
    } else {
        ctx.out
            .print(&output::table(&["ACTION", "TOKEN", "DETAIL"], &rows))?;
    }
    // No secret is printed: a scheduled sweep's output ends up in mail and logs. The successor
    // is kept sealed; `tessera deployment command` shows the current installer command.
    if !ctx.out.json {
        for r in &report.renewed {
            if let Some(s) = &r.successor {
                ctx.out.print(&format!(
                    "renewed deployment token {} as {} ({}); show the installer command with `tessera deployment command`",
                    r.expired, s.id, s.hint
                ))?;
            }
        }
    }
    Ok(())
}

/// `tessera audit`.
pub(crate) async fn audit(ctx: &Ctx, args: AuditArgs) -> Result<()> {
    let now = ctx.now();
    let mut filter = AuditFilter::default();
    if let Some(t) = &args.token {
        filter.token = Some(match ctx.resolve_id(t).await {
            Ok(id) => id,
            // A purged token's events stay: accept its full id even without a record.
            Err(e) => TokenId::parse(t.trim()).map_err(|_| e)?,
        });
    }
    if let Some(a) = &args.actor {
        filter.actor = Some(match a.as_str() {
            "system" => Actor::System,
            "client" => Actor::Client,
            other => Actor::User(UserId::parse(other.strip_prefix("user:").unwrap_or(other))?),
        });
    }
    filter.since = args
        .since
        .as_deref()
        .map(|s| parse::instant("--since", s, now))
        .transpose()?;
    filter.until = args
        .until
        .as_deref()
        .map(|s| parse::instant("--until", s, now))
        .transpose()?;
    filter.limit = args.limit;
    let events = ctx.service.audit(&filter, &ctx.principal).await?;
    let rows: Vec<Vec<String>> = events.iter().map(event_row).collect();
    ctx.out.listing(
        &["AT", "ACTOR", "ACTION", "KIND", "TOKEN", "HINT", "DETAIL"],
        &rows,
        &serde_json::to_value(&events).unwrap_or(Value::Null),
        "no audit events match",
    )
}

fn event_row(e: &AuditEvent) -> Vec<String> {
    let action = match &e.action {
        AuditAction::Issued => String::from("issued"),
        AuditAction::Used => String::from("used"),
        AuditAction::Refused { reason } => format!("refused: {}", reason.code()),
        AuditAction::UsedMany {
            count, addresses, ..
        } => format!("used x{count} ({addresses} addresses)"),
        AuditAction::RefusedMany {
            reason,
            count,
            addresses,
            ..
        } => format!(
            "refused x{count}: {} ({addresses} addresses)",
            reason.code()
        ),
        AuditAction::StateChanged { from, to } => format!("{from} -> {to}"),
        AuditAction::Rotated { successor } => {
            format!("rotated -> {}", output::cut(&successor.to_string(), 13))
        }
        AuditAction::Renewed { successor } => {
            format!("renewed -> {}", output::cut(&successor.to_string(), 13))
        }
        AuditAction::Mapped => String::from("mapped"),
        AuditAction::Unmapped => String::from("unmapped"),
        AuditAction::MappingToggled { enabled } => {
            format!("mapping {}", if *enabled { "on" } else { "off" })
        }
        AuditAction::Toggled { enabled } => {
            format!("toggled {}", if *enabled { "on" } else { "off" })
        }
        AuditAction::IpBlocked => String::from("ip blocked"),
        AuditAction::IpUnblocked => String::from("ip unblocked"),
        AuditAction::Purged => String::from("purged"),
        AuditAction::Resealed => String::from("resealed"),
        AuditAction::EnrolledAgain => String::from("enrolled again"),
        AuditAction::EndpointEnabled { allow_delete } => format!(
            "token authentication on{}",
            if *allow_delete {
                " (delete allowed)"
            } else {
                ""
            }
        ),
        AuditAction::EndpointDisabled => String::from("token authentication off"),
        AuditAction::DeleteAllowed { allowed } => {
            format!("delete {}", if *allowed { "allowed" } else { "forbidden" })
        }
        _ => String::from("other"),
    };
    let mut detail = Vec::new();
    if let Some(g) = &e.generated_by {
        detail.push(format!("generated by {g}"));
    }
    if let Some(d) = &e.subject.device {
        detail.push(format!("device {d}"));
    }
    if let Some(n) = &e.subject.name {
        detail.push(format!("name {n}"));
    }
    if let Some(o) = &e.subject.owner {
        detail.push(format!("owner {o}"));
    }
    if let Some(p) = &e.subject.permission {
        detail.push(format!("action {p}"));
    }
    match (&e.subject.endpoint, e.subject.method) {
        (Some(ep), Some(m)) => detail.push(format!("{m} {ep}")),
        (Some(ep), None) => detail.push(format!("endpoint {ep}")),
        _ => {}
    }
    if let Some(ip) = e.ip {
        detail.push(format!("ip {ip}"));
    }
    vec![
        output::time(e.at),
        e.actor.to_string(),
        action,
        e.subject
            .kind
            .map_or_else(|| String::from("-"), |k| k.to_string()),
        e.subject
            .token
            .map_or_else(|| String::from("-"), |t| t.to_string()),
        e.subject
            .hint
            .as_ref()
            .map_or_else(|| String::from("-"), ToString::to_string),
        detail.join(", "),
    ]
}

/// `tessera verify [TOKEN]`: read-only: parse, look up, report whether in force.
pub(crate) async fn verify(ctx: &Ctx, token: Option<String>) -> Result<()> {
    let token = read_token(token)?;
    let presented = match parse_any_spelling(&token) {
        Ok(p) => p,
        Err(e) => {
            rejected_json(ctx, Rejection::Malformed)?;
            return Err(CliError::Rejected {
                reason: Rejection::Malformed,
                context: format!("token ({e})"),
                fix: None,
            });
        }
    };
    let kind = presented.kind();
    let Some(r) = ctx.find_presented(&presented).await? else {
        rejected_json(ctx, Rejection::NotFound)?;
        return Err(CliError::rejected(
            Rejection::NotFound,
            format!("{kind} token"),
        ));
    };
    drop(presented);
    let t = ctx.service.summary(&r, ctx.now());
    if let Some(rej) = state_rejection(t.state) {
        if ctx.out.json {
            ctx.out.json(&json!({
                "accepted": false,
                "reason": rej.code(),
                "oauth_error": rej.oauth().as_str(),
                "token": t,
            }))?;
        }
        return Err(CliError::rejected(rej, format!("{kind} token {}", t.id)));
    }
    let note = match t.state {
        State::Superseded => " (rotated: in its grace window)",
        _ => "",
    };
    ctx.out.result(
        &format!(
            "in force: {kind} token {} ({}){}{note}",
            t.id,
            t.hint,
            t.name
                .as_ref()
                .map(|n| format!(" named {n}"))
                .unwrap_or_default()
        ),
        &json!({ "accepted": true, "token": t }),
    )
}
