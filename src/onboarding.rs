//! Device onboarding (enrollment) tokens: usage-limited, shown as QR codes.

use std::collections::HashMap;

use tessera_core::audit::{Actor, AuditAction, AuditEvent};
use tessera_core::format::{self, Spelling};
use tessera_core::id::{DeviceGroup, DeviceId, PolicyId, TokenId};
use tessera_core::kind::KindData;
use tessera_core::kind::onboarding::{DeviceBinding, OnboardingData, UsageLimit};
use tessera_core::lifecycle::State;
use tessera_core::record::{TokenRecord, TokenSummary};
use tessera_core::validate::Rejection;
use tessera_core::{InvalidInput, Kind, Secret};
use tessera_store::{Enrollment, RedeemEvents, Redemption, TokenFilter};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::principal::Principal;
use crate::request::{Access, RequestContext, narrow};
use crate::service::{Issued, TokenService};

/// Onboarding tokens: see [`TokenService::onboarding`].
#[derive(Clone, Copy, Debug)]
pub struct OnboardingTokens<'a> {
    svc: &'a TokenService,
}

/// How to create an onboarding token.
#[derive(Clone, Debug)]
pub struct NewOnboarding {
    /// Enrollment policy applied to devices.
    pub policy: PolicyId,
    /// Group devices are placed in.
    pub group: DeviceGroup,
    /// Uses allowed (single use by default).
    pub limit: UsageLimit,
    /// Expiry, if any.
    pub expires_at: Option<OffsetDateTime>,
    /// Which devices may redeem it.
    pub binding: DeviceBinding,
    /// Prefixed token (for QR codes) or short code (typed on a device).
    pub spelling: Spelling,
    /// Keep the secret sealed under the pepper so its QR code can be shown again during the
    /// token's life ([`OnboardingTokens::reveal`]); off by default (shown once).
    pub keep_sealed: bool,
}

impl NewOnboarding {
    /// A single-use token applying `policy` and placing devices in `group`.
    ///
    /// # Errors
    ///
    /// When the policy or group is invalid.
    pub fn new(policy: impl Into<String>, group: impl Into<String>) -> Result<Self> {
        Ok(Self {
            policy: PolicyId::parse(policy)?,
            group: DeviceGroup::parse(group)?,
            limit: UsageLimit::SINGLE,
            expires_at: None,
            binding: DeviceBinding::Any,
            spelling: Spelling::Prefixed,
            keep_sealed: false,
        })
    }

    /// Allow this many uses.
    #[must_use]
    pub const fn limit(mut self, limit: UsageLimit) -> Self {
        self.limit = limit;
        self
    }

    /// Expire at `at`.
    #[must_use]
    pub const fn expires_at(mut self, at: OffsetDateTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Restrict to a device, or to the first device that redeems it.
    #[must_use]
    pub fn binding(mut self, binding: DeviceBinding) -> Self {
        self.binding = binding;
        self
    }

    /// Keep the secret sealed (AEAD under a key derived from the pepper) so an administrator
    /// can show or print its QR code again while the token can still enroll devices
    /// ([`OnboardingTokens::reveal`]). Off by default: the secret is shown once.
    #[must_use]
    pub const fn keep_sealed(mut self, on: bool) -> Self {
        self.keep_sealed = on;
        self
    }

    /// Spell the token as a short code a person can type.
    #[must_use]
    pub const fn short_code(mut self) -> Self {
        self.spelling = Spelling::ShortCode;
        self
    }
}

/// What a device gets when its redemption is accepted.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Enrolled {
    /// The token redeemed.
    pub token: TokenId,
    /// Policy to apply.
    pub policy: PolicyId,
    /// Group to join.
    pub group: DeviceGroup,
    /// Uses left, `None` when unlimited.
    pub remaining: Option<u64>,
    /// When this device enrolled: now, or the first time for a repeat.
    pub enrolled_at: OffsetDateTime,
    /// Whether this device was enrolled by the token already (a repeat: nothing consumed).
    pub repeated: bool,
}

/// An onboarding token in a listing.
#[derive(Clone, Debug)]
pub struct OnboardingListing {
    /// The token.
    pub token: TokenSummary,
    /// Its settings.
    pub data: OnboardingData,
    /// Devices that redeemed it, oldest first.
    pub devices: Vec<Enrollment>,
}

impl TokenService {
    /// Onboarding tokens.
    pub const fn onboarding(&self) -> OnboardingTokens<'_> {
        OnboardingTokens { svc: self }
    }
}

impl OnboardingTokens<'_> {
    fn mint(
        &self,
        spec: NewOnboarding,
        by: &Principal,
        now: OffsetDateTime,
    ) -> Result<(Secret, TokenRecord)> {
        if spec.expires_at.is_some_and(|e| e <= now) {
            return Err(InvalidInput::NotInFuture { what: "expiry" }.into());
        }
        let data = KindData::Onboarding(OnboardingData {
            policy: spec.policy,
            group: spec.group,
            binding: spec.binding,
        });
        let (secret, mut record) = self.svc.mint(
            Kind::Onboarding,
            spec.spelling,
            data,
            spec.limit,
            spec.expires_at,
            by.actor(),
            None,
            now,
        )?;
        if spec.keep_sealed {
            self.svc.seal_into(&secret, &mut record)?;
        }
        Ok((secret, record))
    }

    /// Create one token.
    ///
    /// # Errors
    ///
    /// An expiry not in the future; store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "onboarding"),
        err(level = "warn")
    )]
    pub async fn create(&self, spec: NewOnboarding, by: &Principal) -> Result<Issued> {
        let now = self.svc.now();
        let (secret, record) = self.mint(spec, by, now)?;
        self.svc.store_issued(secret, record, now).await
    }

    /// Create many tokens at once (e.g. one per device group), all or none.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create); on error none is stored.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "onboarding"),
        err(level = "warn")
    )]
    pub async fn bulk(&self, specs: Vec<NewOnboarding>, by: &Principal) -> Result<Vec<Issued>> {
        let now = self.svc.now();
        let mut minted = Vec::with_capacity(specs.len());
        for spec in specs {
            minted.push(self.mint(spec, by, now)?);
        }
        self.svc.store_all_issued(minted, &[], now).await
    }

    /// A device redeems a token: atomically consumes one use, records the device and returns
    /// the policy and group. Under any concurrency a token with N uses enrolls at most N
    /// devices.
    ///
    /// One device, one use: a device the token enrolled already gets the same enrollment back
    /// ([`Enrolled::repeated`], its first [`enrolled_at`](Enrolled::enrolled_at)) and consumes
    /// nothing, decided atomically in the store. That holds after the token's last use too (a
    /// device retrying after a lost answer expects its enrollment, not a refusal); an expired,
    /// revoked, deactivated or rotated-out token refuses a repeat as it refuses any redemption.
    ///
    /// The audit event of the outcome (`Used`, `EnrolledAgain` or the refusal, as
    /// [`Builder::audit_uses`](crate::Builder::audit_uses) and
    /// [`audit_refusals`](crate::Builder::audit_refusals) ask) is written by the store with the
    /// outcome, in its transaction: a use is never stored without its event.
    ///
    /// # Errors
    ///
    /// Store failures. A refused token is `Ok(Err(rejection))`. This is
    /// [`TokenService::validate`] with [`RequestContext::device`].
    pub async fn redeem(
        &self,
        token: &str,
        device: &DeviceId,
    ) -> Result<Result<Enrolled, Rejection>> {
        let outcome = self
            .svc
            .validate(token, &RequestContext::new().device(device))
            .await;
        narrow(outcome, |a| match a {
            Access::Onboarding(e) => Some(e),
            _ => None,
        })
    }

    pub(crate) async fn accept(
        &self,
        token: &str,
        device: &DeviceId,
    ) -> Result<Result<Enrolled, Rejection>> {
        let Ok(presented) = format::parse(Kind::Onboarding, token) else {
            return Ok(Err(Rejection::Malformed));
        };
        // The clock is read once the token parses: a malformed token costs no clock read.
        let now = self.svc.now();
        // The outcome's audit event is written by the store in the same transaction as the
        // outcome it decides: a use is never stored without its event, nor its event without it.
        let settings = &self.svc.inner.settings;
        let mut events = RedeemEvents::NONE;
        let template = |action| AuditEvent::new(now, Actor::Client, action).device(device);
        if settings.audit_uses {
            events = events
                .redeemed(template(AuditAction::Used))
                .repeated(template(AuditAction::EnrolledAgain));
        }
        if settings.audit_refusals {
            events = events.refused(template(AuditAction::Refused {
                reason: Rejection::NotFound,
            }));
        }
        let mut last = Rejection::NotFound;
        for digest in self.svc.inner.peppers.candidates(&presented) {
            let (r, enrolled_at, repeated) = match self
                .svc
                .inner
                .store
                .redeem(&digest, device, now, &events)
                .await?
            {
                Redemption::Redeemed(r) => (r, now, false),
                // One device, one use: its enrollment back, nothing consumed.
                Redemption::Repeated { record, enrollment } => (record, enrollment.at, true),
                Redemption::Refused(Rejection::NotFound) => continue,
                Redemption::Refused(rej) => {
                    last = rej;
                    // The refusal's audit event was stored with it; the record is read again
                    // only to name the token on the validation's span when a subscriber wants it.
                    if !tracing::Span::current().is_disabled() {
                        if let Some(r) = self.svc.inner.store.find_by_digest(&digest).await? {
                            crate::observe::refused_token(r.id);
                            tracing::debug!(reason = rej.code(), token_id = %r.id,
                                "known token refused");
                        }
                    }
                    break;
                }
            };
            let KindData::Onboarding(d) = &r.data else {
                return Ok(Err(Rejection::NotFound));
            };
            return Ok(Ok(Enrolled {
                token: r.id,
                policy: d.policy.clone(),
                group: d.group.clone(),
                remaining: r.remaining(),
                enrolled_at,
                repeated,
            }));
        }
        Ok(Err(last))
    }

    /// The secret of a token created with [`NewOnboarding::keep_sealed`], opened from its
    /// sealed copy, to show or print its QR code (or text) again. Only while the token can
    /// still enroll a device: not once it is expired, exhausted, revoked or rotated out.
    /// Nothing is written.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchToken`]; [`Error::NotSealed`] when it was not created with sealing on;
    /// [`Error::Unsupported`] when it can no longer enroll; the core's
    /// [`SealKeyRetired`](tessera_core::Error::SealKeyRetired) when the pepper that sealed it
    /// is no longer configured.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use tessera::{memory::MemoryStore, onboarding::NewOnboarding, Principal, TokenService};
    /// use tessera::core::digest::{KeyId, Pepper, Peppers};
    ///
    /// let service = TokenService::new(MemoryStore::new(), Peppers::new(Pepper::generate(KeyId(1))?));
    /// let admin = Principal::admin("alice")?;
    /// let spec = NewOnboarding::new("kiosk-policy", "lobby")?.keep_sealed(true);
    /// let issued = service.onboarding().create(spec, &admin).await?;
    /// let again = service.onboarding().reveal(issued.token.id).await?;
    /// assert!(again.ct_eq(issued.secret.expose_secret()));
    /// # Ok::<(), tessera::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn reveal(&self, id: TokenId) -> Result<Secret> {
        let record = self.svc.record(Kind::Onboarding, id).await?;
        let state = record.effective_state(self.svc.now());
        if !matches!(state, State::Active | State::Superseded) {
            return Err(Error::Unsupported(
                "this onboarding token can no longer enroll devices (expired, used up, revoked or rotated out), so its QR code is not shown again; create a new token",
            ));
        }
        self.svc.open(&record)
    }

    /// Revoke a token: no further device can enroll with it.
    ///
    /// # Errors
    ///
    /// [`crate::Error::NoSuchToken`]; a transition error when already revoked.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "onboarding"),
        err(level = "warn")
    )]
    pub async fn revoke(&self, id: TokenId, by: &Principal) -> Result<TokenSummary> {
        self.svc.record(Kind::Onboarding, id).await?;
        self.svc.revoke(id, by).await
    }

    /// Every onboarding token with its uses left and enrolled devices.
    ///
    /// # Errors
    ///
    /// Store failures.
    #[tracing::instrument(
        level = "info",
        skip_all,
        fields(kind = "onboarding"),
        err(level = "warn")
    )]
    pub async fn list(&self) -> Result<Vec<OnboardingListing>> {
        let now = self.svc.now();
        let records = self
            .svc
            .inner
            .store
            .list(&TokenFilter::default().kind(Kind::Onboarding))
            .await?;
        // Every token's devices in one read, not one per token.
        let ids: Vec<TokenId> = records.iter().map(|r| r.id).collect();
        let mut devices: HashMap<TokenId, Vec<Enrollment>> = HashMap::new();
        for (id, e) in self.svc.inner.store.enrollments_of(&ids).await? {
            devices.entry(id).or_default().push(e);
        }
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let KindData::Onboarding(data) = r.data.clone() else {
                continue;
            };
            out.push(OnboardingListing {
                devices: devices.remove(&r.id).unwrap_or_default(),
                token: r.summary(now),
                data,
            });
        }
        Ok(out)
    }
}
