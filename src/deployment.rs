//! Mass-deployment tokens for client installers.

use tessera_core::format::Spelling;
use tessera_core::id::{TokenId, TokenName};
use tessera_core::kind::KindData;
use tessera_core::kind::deployment::{self as rules, DeploymentData};
use tessera_core::kind::onboarding::UsageLimit;
use tessera_core::lifecycle::{Action, State};
use tessera_core::record::{TokenRecord, TokenSummary};
use tessera_core::validate::{self, Accepted, Rejection, Request};
use tessera_core::{InvalidInput, Kind, Secret};
use tessera_store::TokenFilter;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::principal::Principal;
use crate::request::{Access, RequestContext, narrow};
use crate::service::{Issued, TokenService, found_or_refuse};

/// The error when no deployment token is in force.
const NONE_IN_FORCE: Error =
    Error::Unsupported("no deployment token is in force; generate one first");

/// Deployment tokens: see [`TokenService::deployment`].
#[derive(Clone, Copy, Debug)]
pub struct DeploymentTokens<'a> {
    svc: &'a TokenService,
}

/// How to generate a deployment token.
#[derive(Clone, Debug)]
pub struct NewDeployment {
    /// Name for reference.
    pub name: TokenName,
    /// Expiry, if any.
    pub expires_at: Option<OffsetDateTime>,
    /// Issue a successor valid 90 days when it expires (on by default, as the seed says).
    pub auto_renew: bool,
}

impl NewDeployment {
    /// A token named `name` with no expiry that renews itself when it expires (turn renewal
    /// off with [`auto_renew(false)`](Self::auto_renew)).
    ///
    /// # Errors
    ///
    /// When the name is invalid.
    pub fn named(name: impl Into<String>) -> Result<Self> {
        Ok(Self {
            name: TokenName::parse(name)?,
            expires_at: None,
            auto_renew: true,
        })
    }

    /// Expire at `at`.
    #[must_use]
    pub const fn expires_at(mut self, at: OffsetDateTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Whether to renew automatically on expiry (default on): `false` opts this token out.
    #[must_use]
    pub const fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }
}

impl TokenService {
    /// Deployment tokens.
    pub const fn deployment(&self) -> DeploymentTokens<'_> {
        DeploymentTokens { svc: self }
    }
}

impl DeploymentTokens<'_> {
    /// Generate a token. Older tokens stay valid until their own expiry; this one becomes the
    /// most recent.
    ///
    /// # Errors
    ///
    /// An expiry not in the future; store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "deployment"),
        err(level = "warn")
    )]
    pub async fn generate(&self, spec: NewDeployment, by: &Principal) -> Result<Issued> {
        let now = self.svc.now();
        if spec.expires_at.is_some_and(|e| e <= now) {
            return Err(InvalidInput::NotInFuture { what: "expiry" }.into());
        }
        let data = KindData::Deployment(DeploymentData {
            name: spec.name,
            auto_renew: spec.auto_renew,
        });
        let (secret, mut record) = self.svc.mint(
            Kind::Deployment,
            Spelling::Prefixed,
            data,
            UsageLimit::Unlimited,
            spec.expires_at,
            by.actor(),
            None,
            now,
        )?;
        self.svc.seal_into(&secret, &mut record)?;
        self.svc.store_issued(secret, record, now).await
    }

    /// Every deployment token, oldest first, with its effective state.
    ///
    /// # Errors
    ///
    /// Store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "deployment"),
        err(level = "warn")
    )]
    pub async fn list(&self) -> Result<Vec<TokenSummary>> {
        self.svc
            .list(&TokenFilter::default().kind(Kind::Deployment))
            .await
    }

    /// The most recently generated token still in force: the one installer commands should
    /// carry.
    ///
    /// # Errors
    ///
    /// Store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "deployment"),
        err(level = "warn")
    )]
    pub async fn latest(&self) -> Result<Option<TokenSummary>> {
        let now = self.svc.now();
        Ok(self.latest_record(now).await?.map(|r| r.summary(now)))
    }

    async fn latest_record(&self, now: OffsetDateTime) -> Result<Option<TokenRecord>> {
        let records = self
            .svc
            .inner
            .store
            .list(
                &TokenFilter::default()
                    .kind(Kind::Deployment)
                    .states([State::Active]),
            )
            .await?;
        Ok(records
            .into_iter()
            .filter(|r| r.effective_state(now) == State::Active)
            .max_by_key(|r| r.created_at))
    }

    /// The secret of the most recent token in force, opened from its sealed copy: what the
    /// console shows as the current token. Nothing is written.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] when no token is in force; [`Error::NotSealed`] for a token
    /// issued before secrets were sealed; [`tessera_core::Error::SealKeyRetired`] when the
    /// pepper that sealed it is no longer configured (and
    /// [`SealBroken`](tessera_core::Error::SealBroken) when the configured one is not it).
    ///
    /// # Security
    ///
    /// The secret stays sealed at rest under a key derived from the pepper; this opens it in
    /// memory only, as a [`Secret`].
    pub async fn latest_secret(&self) -> Result<Secret> {
        let now = self.svc.now();
        let latest = self.latest_record(now).await?.ok_or(NONE_IN_FORCE)?;
        self.svc.open(&latest)
    }

    /// Render the installer command `template` (with `{token}` where the token goes) with the
    /// most recent token in force, at any time, with no secret in hand: after a renewal it
    /// carries the successor. A command rendered earlier keeps its token. The result carries
    /// the secret, so it is a [`Secret`].
    ///
    /// # Errors
    ///
    /// A template without `{token}`; otherwise as [`latest_secret`](Self::latest_secret).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use tessera::{deployment::NewDeployment, memory::MemoryStore, Principal, TokenService};
    /// use tessera::core::digest::{KeyId, Pepper, Peppers};
    ///
    /// let service = TokenService::new(MemoryStore::new(), Peppers::new(Pepper::generate(KeyId(1))?));
    /// let admin = Principal::admin("alice")?;
    /// let issued = service.deployment().generate(NewDeployment::named("fleet")?, &admin).await?;
    /// drop(issued); // the secret was shown once...
    /// // ...and the current command can be shown again whenever it is needed.
    /// let command = service.deployment().command("install.sh --token {token}").await?;
    /// assert!(command.expose_secret().starts_with("install.sh --token tsr_dep_"));
    /// # Ok::<(), tessera::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn command(&self, template: &str) -> Result<Secret> {
        let secret = self.latest_secret().await?;
        Ok(Secret::from_presented(rules::render_command(
            template,
            secret.expose_secret(),
        )?))
    }

    /// Expire a token at once (the console's "Expire Token"): commands rendered with it stop
    /// working.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchToken`]; a transition error when it is already expired or revoked.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "deployment"),
        err(level = "warn")
    )]
    pub async fn expire(&self, id: TokenId, by: &Principal) -> Result<TokenSummary> {
        let r = self
            .svc
            .transition(Some(Kind::Deployment), id, Action::Expire, by.actor())
            .await?;
        Ok(r.summary(self.svc.now()))
    }

    /// Render an installer command `template` (with `{token}` where the token goes) for
    /// `secret`, which must be the most recent deployment token. The result carries the
    /// secret, so it is a [`Secret`] too; a command rendered earlier keeps its token.
    ///
    /// # Errors
    ///
    /// A template without `{token}`; [`Error::Unsupported`] when `secret` is not the most
    /// recent token in force.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "deployment"),
        err(level = "warn")
    )]
    pub async fn render_command(&self, template: &str, secret: &Secret) -> Result<Secret> {
        let latest = self.latest().await?.ok_or(NONE_IN_FORCE)?;
        match self
            .svc
            .lookup(Kind::Deployment, secret.expose_secret())
            .await?
        {
            Ok(f) if f.record.id == latest.id => {}
            _ => {
                return Err(Error::Unsupported(
                    "this is not the most recent deployment token; render the command with the newest one",
                ));
            }
        }
        Ok(Secret::from_presented(rules::render_command(
            template,
            secret.expose_secret(),
        )?))
    }

    /// Validate a token an installer presents: [`TokenService::validate`] with
    /// [`RequestContext::installer`].
    ///
    /// # Errors
    ///
    /// Store failures. A refused token is `Ok(Err(rejection))`.
    pub async fn validate(&self, token: &str) -> Result<Result<Accepted, Rejection>> {
        let outcome = self
            .svc
            .validate(token, &RequestContext::new().installer())
            .await;
        narrow(outcome, |a| match a {
            Access::Deployment(a) => Some(a),
            _ => None,
        })
    }

    pub(crate) async fn accept(&self, token: &str) -> Result<Result<Accepted, Rejection>> {
        let found = found_or_refuse!(self.svc, Kind::Deployment, token);
        let (record, now) = (&*found.record, found.now);
        let event = || self.svc.use_event(record, now);
        match validate::validate(record, &Request::Deployment, now) {
            Ok(a) => {
                self.svc.used(&found, None, None, None, event);
                Ok(Ok(a))
            }
            Err(rej) => {
                self.svc.refused(&found, rej, None, None, event);
                Ok(Err(rej))
            }
        }
    }
}
