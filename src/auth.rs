//! Per-user auth tokens: a user's REST API token scoped to a subset of their permissions.

use std::collections::BTreeSet;
use std::sync::Arc;

use tessera_core::Kind;
use tessera_core::format::Spelling;
use tessera_core::id::{Permission, TokenId, TokenName, UserId};
use tessera_core::kind::KindData;
use tessera_core::kind::auth::{AuthData, Expiry, Scope};
use tessera_core::kind::onboarding::UsageLimit;
use tessera_core::lifecycle::Action;
use tessera_core::record::{TokenRecord, TokenSummary};
use tessera_core::validate::{self, Rejection, Request};
use tessera_store::{SharedRecord, TokenFilter};

use crate::error::{Error, Result};
use crate::principal::Principal;
use crate::request::{Access, RequestContext, narrow};
use crate::service::{Issued, TokenService, found_or_refuse};

/// Auth tokens: see [`TokenService::auth`].
#[derive(Clone, Copy, Debug)]
pub struct AuthTokens<'a> {
    svc: &'a TokenService,
}

/// How to generate an auth token.
#[derive(Clone, Debug)]
pub struct NewAuth {
    /// The user (technician) it is for.
    pub owner: UserId,
    /// Its name.
    pub name: TokenName,
    /// What it may do.
    pub scope: Scope,
    /// When it expires.
    pub expiry: Expiry,
}

impl NewAuth {
    /// A token for `owner` named `name`, scoped to `scope`, expiring per `expiry` (`90m`,
    /// `12h`, `30d` or `2027-01-31`).
    ///
    /// # Errors
    ///
    /// Which of the values is invalid, and why.
    pub fn new<'a>(
        owner: &str,
        name: &str,
        scope: impl IntoIterator<Item = &'a str>,
        expiry: &str,
    ) -> Result<Self> {
        let perms = scope
            .into_iter()
            .map(Permission::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            owner: UserId::parse(owner)?,
            name: TokenName::parse(name)?,
            scope: Scope::new(perms)?,
            expiry: Expiry::parse(expiry)?,
        })
    }
}

/// An accepted auth-token request.
///
/// It shares the token's stored record: its owner is read when asked for, never copied on the
/// validation path.
#[derive(Clone)]
pub struct AuthAccess {
    /// The token.
    pub token: TokenId,
    record: Arc<SharedRecord>,
}

impl AuthAccess {
    /// The access `record` grants, if it is an auth token's.
    fn of(record: Arc<SharedRecord>) -> Option<Self> {
        matches!(record.data, KindData::Auth(_)).then(|| Self {
            token: record.id,
            record,
        })
    }

    /// The user the request acts for.
    pub fn owner(&self) -> &UserId {
        match &self.record.data {
            KindData::Auth(d) => &d.owner,
            // `of` admits an auth token's record only, and a shared record never changes (a
            // write shares a new one).
            _ => unreachable!("an AuthAccess holds an auth token's record"),
        }
    }
}

impl PartialEq for AuthAccess {
    fn eq(&self, other: &Self) -> bool {
        self.token == other.token && self.owner() == other.owner()
    }
}

impl Eq for AuthAccess {}

impl core::fmt::Debug for AuthAccess {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AuthAccess")
            .field("token", &self.token)
            .field("owner", self.owner())
            .finish()
    }
}

/// An auth token in a listing.
#[derive(Clone, Debug)]
pub struct AuthListing {
    /// The token (with `generated_by` when an admin issued it).
    pub token: TokenSummary,
    /// Its owner, name and scope.
    pub data: AuthData,
}

const NOT_YOURS: &str = "only the token's owner or an administrator can manage it";

impl TokenService {
    /// Auth tokens.
    pub const fn auth(&self) -> AuthTokens<'_> {
        AuthTokens { svc: self }
    }
}

impl AuthTokens<'_> {
    /// Generate a token for `spec.owner`. A user generates their own; an administrator may
    /// generate for anyone, recorded as `generated_by`. `delegated` is what the owner holds
    /// now: the scope must be a subset of it.
    ///
    /// # Errors
    ///
    /// [`Error::Forbidden`] when a non-admin generates for someone else; a scope action the
    /// owner does not hold; an expiry not in the future.
    #[tracing::instrument(level = "info", skip_all, fields(kind = "auth"), err(level = "warn"))]
    pub async fn generate(
        &self,
        spec: NewAuth,
        delegated: &BTreeSet<Permission>,
        by: &Principal,
    ) -> Result<Issued> {
        if &spec.owner != by.id() && !by.is_admin() {
            return Err(Error::Forbidden {
                why: "only an administrator can generate auth tokens for another user",
            });
        }
        spec.scope.check_within(delegated)?;
        let now = self.svc.now();
        let expires_at = spec.expiry.resolve(now)?;
        let generated_by = (&spec.owner != by.id()).then(|| by.id().clone());
        let (secret, record) = self.svc.mint(
            Kind::Auth,
            Spelling::Prefixed,
            KindData::Auth(AuthData {
                owner: spec.owner,
                name: spec.name,
                scope: spec.scope,
            }),
            UsageLimit::Unlimited,
            Some(expires_at),
            by.actor(),
            generated_by,
            now,
        )?;
        self.svc.store_issued(secret, record, now).await
    }

    /// Tokens `by` may see: their own, or for an administrator everyone's (narrowed to
    /// `owner` if given).
    ///
    /// # Errors
    ///
    /// [`Error::Forbidden`] when a non-admin asks for another user's tokens.
    #[tracing::instrument(level = "info", skip_all, fields(kind = "auth"), err(level = "warn"))]
    pub async fn list(&self, owner: Option<&UserId>, by: &Principal) -> Result<Vec<AuthListing>> {
        let owner = match (owner, by.is_admin()) {
            (Some(o), false) if o != by.id() => return Err(Error::Forbidden { why: NOT_YOURS }),
            (None, false) => Some(by.id()),
            (o, _) => o,
        };
        let mut filter = TokenFilter::default().kind(Kind::Auth);
        if let Some(o) = owner {
            filter = filter.owner(o.clone());
        }
        let now = self.svc.now();
        Ok(self
            .svc
            .inner
            .store
            .list(&filter)
            .await?
            .into_iter()
            .filter_map(|r| match &r.data {
                KindData::Auth(d) => Some(AuthListing {
                    token: r.summary(now),
                    data: d.clone(),
                }),
                _ => None,
            })
            .collect())
    }

    async fn owned(&self, id: TokenId, by: &Principal) -> Result<TokenRecord> {
        let r = self.svc.record(Kind::Auth, id).await?;
        match &r.data {
            KindData::Auth(d) if &d.owner == by.id() || by.is_admin() => Ok(r),
            _ => Err(Error::Forbidden { why: NOT_YOURS }),
        }
    }

    /// Revoke one token.
    ///
    /// # Errors
    ///
    /// [`Error::Forbidden`] for another user's token unless admin.
    #[tracing::instrument(level = "info", skip_all, fields(kind = "auth"), err(level = "warn"))]
    pub async fn revoke(&self, id: TokenId, by: &Principal) -> Result<TokenSummary> {
        self.owned(id, by).await?;
        self.svc.revoke(id, by).await
    }

    /// Delete many tokens at once. Permission is checked for all before any is deleted.
    /// Returns how many were deleted.
    ///
    /// # Errors
    ///
    /// [`Error::Forbidden`] when any is another user's and `by` is not an admin (none is
    /// deleted); [`Error::NoSuchToken`] for an unknown id.
    #[tracing::instrument(level = "info", skip_all, fields(kind = "auth"), err(level = "warn"))]
    pub async fn delete_many(&self, ids: &[TokenId], by: &Principal) -> Result<usize> {
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            records.push(self.owned(*id, by).await?);
        }
        let mut n = 0;
        for r in records {
            if r.state.is_terminal() {
                continue;
            }
            self.svc
                .transition(Some(Kind::Auth), r.id, Action::Delete, by.actor())
                .await?;
            n += 1;
        }
        Ok(n)
    }

    /// Check a REST request for `action` carrying `token`: accepted only when the action is in
    /// the token's scope and the owner still holds it (`held`, from the application, now).
    ///
    /// # Errors
    ///
    /// Store failures. A refused token is `Ok(Err(rejection))`; scope refusals map to
    /// `insufficient_scope`. This is [`TokenService::validate`] with
    /// [`RequestContext::action`].
    pub async fn check(
        &self,
        token: &str,
        action: &Permission,
        held: &BTreeSet<Permission>,
    ) -> Result<Result<AuthAccess, Rejection>> {
        let outcome = self
            .svc
            .validate(token, &RequestContext::new().action(action, held))
            .await;
        narrow(outcome, |a| match a {
            Access::Auth(a) => Some(a),
            _ => None,
        })
    }

    pub(crate) async fn accept(
        &self,
        token: &str,
        action: &Permission,
        held: &BTreeSet<Permission>,
    ) -> Result<Result<AuthAccess, Rejection>> {
        let found = found_or_refuse!(self.svc, Kind::Auth, token);
        let (record, now) = (&*found.record, found.now);
        let event = || self.svc.use_event(record, now).permission(action);
        match validate::validate(record, &Request::Auth { action, held }, now) {
            Ok(_) => {
                self.svc.used(&found, None, None, None, event);
                Ok(AuthAccess::of(found.record).ok_or(Rejection::NotFound))
            }
            Err(rej) => {
                self.svc.refused(&found, rej, None, None, event);
                Ok(Err(rej))
            }
        }
    }

    /// The owner of a token, without validating it (for an application that must look up the
    /// user's permissions before calling [`check`](Self::check)).
    ///
    /// # Errors
    ///
    /// Store failures. `Ok(None)` for a malformed or unknown token.
    #[tracing::instrument(level = "info", skip_all, fields(kind = "auth"), err(level = "warn"))]
    pub async fn owner_of(&self, token: &str) -> Result<Option<UserId>> {
        Ok(match self.svc.lookup(Kind::Auth, token).await? {
            Ok(f) => match &f.record.data {
                KindData::Auth(d) => Some(d.owner.clone()),
                _ => None,
            },
            Err(_) => None,
        })
    }
}
