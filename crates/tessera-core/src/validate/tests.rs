//! Validation rules: every rejection each kind can reach, the acceptance paths, grace windows,
//! lazy expiry and exhaustion, and the one outside answer.

use core::num::NonZeroU64;
use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use time::Duration;
use time::macros::datetime;

use super::*;
use crate::audit::Actor;
use crate::digest::{Digest, Hint, KeyId};
use crate::format::Spelling;
use crate::id::{
    AccessType, ApplicationName, Description, DeviceGroup, PolicyId, TokenName, UserId,
};
use crate::kind::application::AccessTypes;
use crate::kind::auth::Scope;
use crate::kind::onboarding::{DeviceBinding, UsageLimit};
use crate::kind::{ApplicationData, AuthData, DeploymentData};

const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);
const ID: TokenId = TokenId::from_u128(0x5eed);

fn perm(s: &str) -> Permission {
    Permission::parse(s).unwrap()
}

fn device(s: &str) -> DeviceId {
    DeviceId::parse(s).unwrap()
}

fn endpoint(s: &str) -> EndpointId {
    EndpointId::parse(s).unwrap()
}

fn deployment() -> KindData {
    KindData::Deployment(DeploymentData {
        name: TokenName::parse("installers").unwrap(),
        auto_renew: false,
    })
}

fn onboarding(binding: DeviceBinding) -> KindData {
    KindData::Onboarding(OnboardingData {
        policy: PolicyId::parse("kiosk").unwrap(),
        group: DeviceGroup::parse("lobby").unwrap(),
        binding,
    })
}

fn primary(e: &str, method: Method) -> KindData {
    KindData::Endpoint(EndpointData::Primary {
        endpoint: endpoint(e),
        method,
    })
}

fn secondary(enabled: bool) -> KindData {
    KindData::Endpoint(EndpointData::Secondary {
        name: TokenName::parse("crm").unwrap(),
        description: Description::parse("the CRM integration").unwrap(),
        enabled,
    })
}

fn auth(scope: &[&str]) -> KindData {
    KindData::Auth(AuthData {
        owner: UserId::parse("tech-1").unwrap(),
        name: TokenName::parse("scripts").unwrap(),
        scope: Scope::new(scope.iter().map(|s| perm(s))).unwrap(),
    })
}

fn application() -> KindData {
    KindData::Application(ApplicationData {
        name: ApplicationName::parse("siem-feed").unwrap(),
        description: Description::parse("").unwrap(),
        access: AccessTypes::new([AccessType::parse("third-party-feeds").unwrap()]).unwrap(),
    })
}

/// One data value of each kind, in [`Kind::ALL`] order.
fn one_of_each() -> [KindData; 5] {
    [
        deployment(),
        onboarding(DeviceBinding::Any),
        primary("/orders", Method::Get),
        auth(&["unlock"]),
        application(),
    ]
}

fn record(data: KindData) -> TokenRecord {
    TokenRecord {
        id: ID,
        digest: Digest::from_parts(KeyId(1), [7; 32]),
        spelling: Spelling::Prefixed,
        hint: Hint::from_stored("tsr_xxx_abcd…").unwrap(),
        sealed: None,
        state: State::Active,
        created_at: NOW - Duration::days(10),
        created_by: Actor::System,
        generated_by: None,
        expires_at: None,
        last_used_at: None,
        activated_at: NOW - Duration::days(10),
        grace_until: None,
        successor: None,
        limit: UsageLimit::Unlimited,
        uses: 0,
        data,
    }
}

/// The owned facts a request borrows, so requests can be built for any kind.
struct Facts {
    device: DeviceId,
    endpoint: EndpointId,
    mapping: Mapping,
    action: Permission,
    held: BTreeSet<Permission>,
}

impl Facts {
    fn new() -> Self {
        let endpoint = endpoint("/orders");
        Self {
            device: device("SN-1"),
            mapping: Mapping {
                secondary: ID,
                endpoint: endpoint.clone(),
                method: Method::Get,
                enabled: true,
            },
            endpoint,
            action: perm("unlock"),
            held: [perm("unlock"), perm("reset_password")].into(),
        }
    }

    /// A request of `kind` that the matching record from [`one_of_each`] accepts.
    fn request(&self, kind: Kind) -> Request<'_> {
        match kind {
            Kind::Deployment => Request::Deployment,
            Kind::Onboarding => Request::Onboarding {
                device: &self.device,
            },
            Kind::Endpoint => Request::Endpoint {
                endpoint: &self.endpoint,
                method: Method::Get,
                mapping: Some(&self.mapping),
            },
            Kind::Auth => Request::Auth {
                action: &self.action,
                held: &self.held,
            },
            Kind::Application => Request::Application {
                ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
                ip_blocked: false,
            },
        }
    }
}

fn accepted(in_grace: bool, kind: Kind) -> Result<Accepted, Rejection> {
    Ok(Accepted {
        token: ID,
        kind,
        in_grace,
    })
}

#[test]
fn every_kind_is_accepted_by_its_own_request() {
    let f = Facts::new();
    for data in one_of_each() {
        let r = record(data);
        assert_eq!(
            validate(&r, &f.request(r.kind()), NOW),
            accepted(false, r.kind())
        );
    }
    // A secondary mapped to this endpoint and method is accepted too.
    let r = record(secondary(true));
    assert_eq!(
        validate(&r, &f.request(Kind::Endpoint), NOW),
        accepted(false, Kind::Endpoint)
    );
}

/// A token of another kind is, to a request, a token that does not exist.
#[test]
fn another_kinds_request_is_not_found() {
    let f = Facts::new();
    for data in one_of_each() {
        let r = record(data);
        for kind in Kind::ALL.into_iter().filter(|k| *k != r.kind()) {
            assert_eq!(
                validate(&r, &f.request(kind), NOW),
                Err(Rejection::NotFound),
                "{kind}"
            );
        }
    }
}

/// Every stored state, for every kind: the lifecycle rejection, before any kind rule.
#[test]
fn stored_states_reject_for_every_kind() {
    let f = Facts::new();
    let cases = [
        (State::Disabled, Rejection::Disabled),
        (State::Dormant, Rejection::Dormant),
        (State::RotatedOut, Rejection::RotatedOut),
        (State::Expired, Rejection::Expired),
        (State::Exhausted, Rejection::Exhausted),
        (State::Revoked, Rejection::Revoked),
        (State::Deleted, Rejection::Deleted),
    ];
    for data in one_of_each() {
        for (state, want) in cases {
            let mut r = record(data.clone());
            r.state = state;
            for kind in Kind::ALL {
                // State rules come first, even for a request of another kind.
                assert_eq!(
                    validate(&r, &f.request(kind), NOW),
                    Err(want),
                    "{state} {kind}"
                );
            }
        }
    }
}

#[test]
fn grace_window_accepts_until_it_ends() {
    let f = Facts::new();
    for data in one_of_each() {
        let mut r = record(data);
        let req = f.request(r.kind());
        r.state = State::Superseded;
        r.successor = Some(TokenId::from_u128(2));
        r.grace_until = Some(NOW + Duration::seconds(1));
        assert_eq!(validate(&r, &req, NOW), accepted(true, r.kind()));
        assert_eq!(
            validate(&r, &req, NOW - Duration::days(1)),
            accepted(true, r.kind())
        );
        // The end of the window is outside it.
        assert_eq!(
            validate(&r, &req, NOW + Duration::seconds(1)),
            Err(Rejection::RotatedOut)
        );
        assert_eq!(
            validate(&r, &req, NOW + Duration::days(1)),
            Err(Rejection::RotatedOut)
        );
        // No window at all: rotated out at once.
        r.grace_until = None;
        assert_eq!(validate(&r, &req, NOW), Err(Rejection::RotatedOut));
        // Expiry inside the window still ends it.
        r.grace_until = Some(NOW + Duration::hours(1));
        r.expires_at = Some(NOW);
        assert_eq!(validate(&r, &req, NOW), Err(Rejection::Expired));
        // Just before that expiry, still in grace.
        assert_eq!(
            validate(&r, &req, NOW - Duration::seconds(1)),
            accepted(true, r.kind())
        );
    }
}

#[test]
fn expiry_is_applied_lazily() {
    let f = Facts::new();
    for data in one_of_each() {
        let mut r = record(data);
        let req = f.request(r.kind());
        r.expires_at = Some(NOW);
        // Still stored as active, refused from the expiry instant on.
        assert_eq!(
            validate(&r, &req, NOW - Duration::nanoseconds(1)),
            accepted(false, r.kind())
        );
        assert_eq!(validate(&r, &req, NOW), Err(Rejection::Expired));
        assert_eq!(
            validate(&r, &req, NOW + Duration::days(400)),
            Err(Rejection::Expired)
        );
        // Expiry outranks disabled and dormant, but not the terminal states.
        for (state, want) in [
            (State::Disabled, Rejection::Expired),
            (State::Dormant, Rejection::Expired),
            (State::Exhausted, Rejection::Exhausted),
            (State::RotatedOut, Rejection::RotatedOut),
            (State::Revoked, Rejection::Revoked),
            (State::Deleted, Rejection::Deleted),
        ] {
            r.state = state;
            assert_eq!(validate(&r, &req, NOW), Err(want), "{state}");
        }
    }
}

#[test]
fn usage_limits_are_applied_lazily() {
    let device = device("SN-1");
    let req = Request::Onboarding { device: &device };
    let mut r = record(onboarding(DeviceBinding::Any));
    r.limit = UsageLimit::uses(3).unwrap();
    for (uses, want) in [
        (0, accepted(false, Kind::Onboarding)),
        (2, accepted(false, Kind::Onboarding)),
        (3, Err(Rejection::Exhausted)),
        (4, Err(Rejection::Exhausted)),
        (u64::MAX, Err(Rejection::Exhausted)),
    ] {
        r.uses = uses;
        assert_eq!(validate(&r, &req, NOW), want, "{uses}");
    }
    // Single use, the onboarding default.
    r.limit = UsageLimit::SINGLE;
    r.uses = 1;
    assert_eq!(validate(&r, &req, NOW), Err(Rejection::Exhausted));
    // Expiry is reported before exhaustion.
    r.expires_at = Some(NOW);
    assert_eq!(validate(&r, &req, NOW), Err(Rejection::Expired));
    // Unlimited never runs out.
    r.expires_at = None;
    r.limit = UsageLimit::Unlimited;
    r.uses = u64::MAX;
    assert_eq!(validate(&r, &req, NOW), accepted(false, Kind::Onboarding));
    // A rotated token in its grace window has no more uses than before it was rotated.
    r.state = State::Superseded;
    r.grace_until = Some(NOW + Duration::hours(1));
    r.limit = UsageLimit::uses(2).unwrap();
    r.uses = 1;
    assert_eq!(validate(&r, &req, NOW), accepted(true, Kind::Onboarding));
    r.uses = 2;
    assert_eq!(validate(&r, &req, NOW), Err(Rejection::Exhausted));
}

#[test]
fn onboarding_device_binding() {
    let (a, b) = (device("SN-A"), device("SN-B"));
    let cases = [
        (DeviceBinding::Any, true, true),
        (DeviceBinding::Device(a.clone()), true, false),
        (DeviceBinding::FirstDevice(None), true, true),
        (DeviceBinding::FirstDevice(Some(a.clone())), true, false),
    ];
    for (binding, admits_a, admits_b) in cases {
        let r = record(onboarding(binding.clone()));
        for (d, admits) in [(&a, admits_a), (&b, admits_b)] {
            let want = if admits {
                accepted(false, Kind::Onboarding)
            } else {
                Err(Rejection::DeviceMismatch)
            };
            assert_eq!(
                validate(&r, &Request::Onboarding { device: d }, NOW),
                want,
                "{binding:?}"
            );
        }
    }
    // After the first redemption the binding sticks to that device.
    let bound = DeviceBinding::FirstDevice(None).after_redeem(&b);
    let r = record(onboarding(bound));
    assert_eq!(
        validate(&r, &Request::Onboarding { device: &a }, NOW),
        Err(Rejection::DeviceMismatch)
    );
}

fn endpoint_request<'a>(
    e: &'a EndpointId,
    method: Method,
    mapping: Option<&'a Mapping>,
) -> Request<'a> {
    Request::Endpoint {
        endpoint: e,
        method,
        mapping,
    }
}

#[test]
fn endpoint_primary_rules() {
    let (orders, users) = (endpoint("/orders"), endpoint("/users"));
    let r = record(primary("/orders", Method::Post));
    let ok = accepted(false, Kind::Endpoint);
    assert_eq!(
        validate(&r, &endpoint_request(&orders, Method::Post, None), NOW),
        ok
    );
    assert_eq!(
        validate(&r, &endpoint_request(&orders, Method::Get, None), NOW),
        Err(Rejection::WrongMethod)
    );
    assert_eq!(
        validate(&r, &endpoint_request(&orders, Method::Delete, None), NOW),
        Err(Rejection::WrongMethod)
    );
    assert_eq!(
        validate(&r, &endpoint_request(&users, Method::Post, None), NOW),
        Err(Rejection::WrongEndpoint)
    );
    // The endpoint is checked before the method.
    assert_eq!(
        validate(&r, &endpoint_request(&users, Method::Get, None), NOW),
        Err(Rejection::WrongEndpoint)
    );
    // A primary needs no mapping; one passed along changes nothing.
    let m = Mapping {
        secondary: ID,
        endpoint: users,
        method: Method::Get,
        enabled: false,
    };
    assert_eq!(
        validate(&r, &endpoint_request(&orders, Method::Post, Some(&m)), NOW),
        ok
    );
}

#[test]
fn endpoint_secondary_rules() {
    let (orders, users) = (endpoint("/orders"), endpoint("/users"));
    let mapping = |secondary: TokenId, e: &EndpointId, method: Method, enabled: bool| Mapping {
        secondary,
        endpoint: e.clone(),
        method,
        enabled,
    };
    let good = mapping(ID, &orders, Method::Get, true);
    let r = record(secondary(true));
    let ok = accepted(false, Kind::Endpoint);
    assert_eq!(
        validate(
            &r,
            &endpoint_request(&orders, Method::Get, Some(&good)),
            NOW
        ),
        ok
    );
    let cases = [
        (None, Rejection::WrongEndpoint),
        (
            Some(mapping(ID, &orders, Method::Get, false)),
            Rejection::MappingDisabled,
        ),
        (
            Some(mapping(TokenId::from_u128(9), &orders, Method::Get, true)),
            Rejection::WrongEndpoint,
        ),
        (
            Some(mapping(ID, &users, Method::Get, true)),
            Rejection::WrongEndpoint,
        ),
        (
            Some(mapping(ID, &orders, Method::Post, true)),
            Rejection::WrongEndpoint,
        ),
        // A disabled mapping for another slot is still the wrong slot.
        (
            Some(mapping(ID, &users, Method::Get, false)),
            Rejection::WrongEndpoint,
        ),
    ];
    for (m, want) in &cases {
        let req = endpoint_request(&orders, Method::Get, m.as_ref());
        assert_eq!(validate(&r, &req, NOW), Err(*want), "{m:?}");
    }
    // The secondary's own toggle comes first.
    let off = record(secondary(false));
    assert_eq!(
        validate(
            &off,
            &endpoint_request(&orders, Method::Get, Some(&good)),
            NOW
        ),
        Err(Rejection::ToggledOff)
    );
    for (m, _) in &cases {
        let req = endpoint_request(&orders, Method::Get, m.as_ref());
        assert_eq!(validate(&off, &req, NOW), Err(Rejection::ToggledOff));
    }
}

#[test]
fn auth_scope_and_withdrawn_permissions() {
    let r = record(auth(&["unlock", "reset_password"]));
    let (unlock, reset, delete) = (perm("unlock"), perm("reset_password"), perm("delete_user"));
    let held: BTreeSet<_> = [unlock.clone(), delete.clone()].into();
    let req = |action| Request::Auth {
        action,
        held: &held,
    };
    assert_eq!(
        validate(&r, &req(&unlock), NOW),
        accepted(false, Kind::Auth)
    );
    // In scope, but the user no longer holds it.
    assert_eq!(
        validate(&r, &req(&reset), NOW),
        Err(Rejection::PermissionWithdrawn)
    );
    // Held by the user, but not delegated to this token.
    assert_eq!(
        validate(&r, &req(&delete), NOW),
        Err(Rejection::InsufficientScope)
    );
    // Neither: scope is checked first.
    let nothing = BTreeSet::new();
    let req = Request::Auth {
        action: &delete,
        held: &nothing,
    };
    assert_eq!(validate(&r, &req, NOW), Err(Rejection::InsufficientScope));
}

#[test]
fn application_ip_blocking() {
    let r = record(application());
    let ip: IpAddr = "2001:db8::1".parse().unwrap();
    let req = |ip_blocked| Request::Application { ip, ip_blocked };
    assert_eq!(
        validate(&r, &req(false), NOW),
        accepted(false, Kind::Application)
    );
    assert_eq!(validate(&r, &req(true), NOW), Err(Rejection::IpBlocked));
    // Dormancy is decided by the sweep and refused here, before the block list.
    let mut dormant = r;
    dormant.state = State::Dormant;
    assert_eq!(validate(&dormant, &req(true), NOW), Err(Rejection::Dormant));
}

/// Every variant, through an exhaustive match so that a new one must be added here.
fn all_rejections() -> Vec<Rejection> {
    let all = [
        Rejection::Malformed,
        Rejection::NotFound,
        Rejection::Expired,
        Rejection::Revoked,
        Rejection::RotatedOut,
        Rejection::Disabled,
        Rejection::Dormant,
        Rejection::Exhausted,
        Rejection::Deleted,
        Rejection::IpBlocked,
        Rejection::InsufficientScope,
        Rejection::PermissionWithdrawn,
        Rejection::WrongEndpoint,
        Rejection::WrongMethod,
        Rejection::MappingDisabled,
        Rejection::DeviceMismatch,
        Rejection::ToggledOff,
    ];
    for r in all {
        match r {
            Rejection::Malformed
            | Rejection::NotFound
            | Rejection::Expired
            | Rejection::Revoked
            | Rejection::RotatedOut
            | Rejection::Disabled
            | Rejection::Dormant
            | Rejection::Exhausted
            | Rejection::Deleted
            | Rejection::IpBlocked
            | Rejection::InsufficientScope
            | Rejection::PermissionWithdrawn
            | Rejection::WrongEndpoint
            | Rejection::WrongMethod
            | Rejection::MappingDisabled
            | Rejection::DeviceMismatch
            | Rejection::ToggledOff => {}
        }
    }
    all.to_vec()
}

#[test]
fn oauth_answer_hides_everything_but_scope() {
    let mut codes = BTreeSet::new();
    for r in all_rejections() {
        let want = match r {
            Rejection::InsufficientScope | Rejection::PermissionWithdrawn => {
                OAuthError::InsufficientScope
            }
            _ => OAuthError::InvalidToken,
        };
        assert_eq!(r.oauth(), want, "{r:?}");
        assert!(codes.insert(r.code()), "duplicate code {}", r.code());
        assert!(
            r.code()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        );
        assert!(!r.to_string().is_empty());
    }
    assert_eq!(OAuthError::InvalidToken.as_str(), "invalid_token");
    assert_eq!(OAuthError::InvalidToken.status(), 401);
    assert_eq!(OAuthError::InsufficientScope.as_str(), "insufficient_scope");
    assert_eq!(OAuthError::InsufficientScope.status(), 403);
    assert_eq!(OAuthError::InvalidRequest.to_string(), "invalid_request");
    assert_eq!(OAuthError::InvalidRequest.status(), 400);
}

/// Every parser error is a malformed token, which answers like any other invalid token.
#[test]
fn format_errors_are_malformed() {
    for text in [
        "",
        "tsr_aut_x",
        "tsr_xyz_0123456789012345678901234567890123",
        "a b",
        &"x".repeat(600),
    ] {
        for kind in Kind::ALL {
            let e = crate::format::parse(kind, text).unwrap_err();
            assert_eq!(Rejection::from(e), Rejection::Malformed);
        }
    }
    assert_eq!(Rejection::Malformed.oauth(), OAuthError::InvalidToken);
}

/// Each kind reaches exactly the rejections the issue lists for it (plus the shared ones).
#[test]
fn each_kind_reaches_its_rejections() {
    let f = Facts::new();
    let shared = [
        Rejection::NotFound,
        Rejection::Expired,
        Rejection::Revoked,
        Rejection::RotatedOut,
        Rejection::Disabled,
        Rejection::Dormant,
        Rejection::Exhausted,
        Rejection::Deleted,
    ];
    let own: [(Kind, &[Rejection]); 5] = [
        (Kind::Deployment, &[]),
        (Kind::Onboarding, &[Rejection::DeviceMismatch]),
        (
            Kind::Endpoint,
            &[
                Rejection::WrongEndpoint,
                Rejection::WrongMethod,
                Rejection::MappingDisabled,
                Rejection::ToggledOff,
            ],
        ),
        (
            Kind::Auth,
            &[Rejection::InsufficientScope, Rejection::PermissionWithdrawn],
        ),
        (Kind::Application, &[Rejection::IpBlocked]),
    ];
    let other_device = device("other");
    let other_endpoint = endpoint("/other");
    let off_mapping = Mapping {
        enabled: false,
        ..f.mapping.clone()
    };
    let other_action = perm("delete_user");
    let none_held = BTreeSet::new();
    for (data, (kind, own)) in one_of_each().into_iter().zip(own) {
        let mut seen = BTreeSet::new();
        let mut records = vec![record(data.clone())];
        if kind == Kind::Onboarding {
            records.push(record(onboarding(DeviceBinding::Device(f.device.clone()))));
        }
        if kind == Kind::Endpoint {
            records.push(record(secondary(true)));
            records.push(record(secondary(false)));
        }
        for state in State::ALL {
            for expired in [false, true] {
                for exhausted in [false, true] {
                    for base in &records {
                        let mut r = base.clone();
                        r.state = state;
                        r.grace_until = Some(NOW + Duration::hours(1));
                        r.expires_at = expired.then_some(NOW);
                        if exhausted {
                            r.limit = UsageLimit::Limited(NonZeroU64::MIN);
                            r.uses = 1;
                        }
                        let mut requests: Vec<Request<'_>> =
                            Kind::ALL.iter().map(|k| f.request(*k)).collect();
                        requests.extend([
                            Request::Onboarding {
                                device: &other_device,
                            },
                            endpoint_request(&other_endpoint, Method::Get, None),
                            endpoint_request(&f.endpoint, Method::Post, None),
                            endpoint_request(&f.endpoint, Method::Get, Some(&off_mapping)),
                            Request::Auth {
                                action: &other_action,
                                held: &f.held,
                            },
                            Request::Auth {
                                action: &f.action,
                                held: &none_held,
                            },
                            Request::Application {
                                ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
                                ip_blocked: true,
                            },
                        ]);
                        for req in &requests {
                            if let Err(e) = validate(&r, req, NOW) {
                                seen.insert(e.code());
                            }
                        }
                    }
                }
            }
        }
        let want: BTreeSet<_> = shared.iter().chain(own).map(|r| r.code()).collect();
        assert_eq!(seen, want, "{kind}");
    }
}

// ----- properties -----

/// The owned description of a request, turned into a [`Request`] against [`Facts`].
#[derive(Clone, Debug)]
enum ReqSpec {
    Deployment,
    Onboarding {
        other_device: bool,
    },
    Endpoint {
        other_endpoint: bool,
        method: Method,
        mapping: Option<(bool, bool, Method, bool)>,
    },
    Auth {
        in_scope: bool,
        held: bool,
    },
    Application {
        blocked: bool,
    },
}

struct Built {
    device: DeviceId,
    endpoint: EndpointId,
    mapping: Option<Mapping>,
    action: Permission,
    held: BTreeSet<Permission>,
}

impl ReqSpec {
    fn build(&self) -> Built {
        let mut b = Built {
            device: device("SN-1"),
            endpoint: endpoint("/orders"),
            mapping: None,
            action: perm("unlock"),
            held: BTreeSet::new(),
        };
        match self {
            Self::Onboarding { other_device: true } => b.device = device("SN-2"),
            Self::Endpoint {
                other_endpoint,
                mapping,
                ..
            } => {
                if *other_endpoint {
                    b.endpoint = endpoint("/users");
                }
                b.mapping = mapping.map(|(own, same_ep, method, enabled)| Mapping {
                    secondary: if own { ID } else { TokenId::from_u128(3) },
                    endpoint: if same_ep {
                        b.endpoint.clone()
                    } else {
                        endpoint("/else")
                    },
                    method,
                    enabled,
                });
            }
            Self::Auth { in_scope, held } => {
                if !in_scope {
                    b.action = perm("delete_user");
                }
                if *held {
                    b.held.insert(b.action.clone());
                }
            }
            _ => {}
        }
        b
    }

    fn request<'a>(&self, b: &'a Built) -> Request<'a> {
        match self {
            Self::Deployment => Request::Deployment,
            Self::Onboarding { .. } => Request::Onboarding { device: &b.device },
            Self::Endpoint { method, .. } => {
                endpoint_request(&b.endpoint, *method, b.mapping.as_ref())
            }
            Self::Auth { .. } => Request::Auth {
                action: &b.action,
                held: &b.held,
            },
            Self::Application { blocked } => Request::Application {
                ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
                ip_blocked: *blocked,
            },
        }
    }
}

fn method() -> impl Strategy<Value = Method> {
    proptest::sample::select(Method::ALL.to_vec())
}

fn req_spec() -> impl Strategy<Value = ReqSpec> {
    prop_oneof![
        Just(ReqSpec::Deployment),
        any::<bool>().prop_map(|other_device| ReqSpec::Onboarding { other_device }),
        (
            any::<bool>(),
            method(),
            proptest::option::of((any::<bool>(), any::<bool>(), method(), any::<bool>()))
        )
            .prop_map(|(other_endpoint, method, mapping)| ReqSpec::Endpoint {
                other_endpoint,
                method,
                mapping
            }),
        (any::<bool>(), any::<bool>())
            .prop_map(|(in_scope, held)| ReqSpec::Auth { in_scope, held }),
        any::<bool>().prop_map(|blocked| ReqSpec::Application { blocked }),
    ]
}

fn kind_data() -> impl Strategy<Value = KindData> {
    let binding = prop_oneof![
        Just(DeviceBinding::Any),
        Just(DeviceBinding::Device(device("SN-1"))),
        Just(DeviceBinding::FirstDevice(None)),
        Just(DeviceBinding::FirstDevice(Some(device("SN-2")))),
    ];
    prop_oneof![
        Just(deployment()),
        binding.prop_map(onboarding),
        (any::<bool>(), method())
            .prop_map(|(other, m)| primary(if other { "/users" } else { "/orders" }, m)),
        any::<bool>().prop_map(secondary),
        Just(auth(&["unlock"])),
        Just(application()),
    ]
}

fn offset() -> impl Strategy<Value = Option<Duration>> {
    proptest::option::of((-3i64..=3).prop_map(Duration::seconds))
}

fn any_record() -> impl Strategy<Value = TokenRecord> {
    (
        kind_data(),
        proptest::sample::select(State::ALL.to_vec()),
        offset(),
        offset(),
        proptest::option::of(1u64..4),
        0u64..5,
    )
        .prop_map(|(data, state, expires, grace, limit, uses)| {
            let mut r = record(data);
            r.state = state;
            r.expires_at = expires.map(|d| NOW + d);
            r.grace_until = grace.map(|d| NOW + d);
            r.limit = limit.map_or(UsageLimit::Unlimited, |n| UsageLimit::uses(n).unwrap());
            r.uses = uses;
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Acceptance implies every rule held: a usable state, before expiry, within the grace
    /// window, uses left, a request of the record's kind; and `in_grace` says Superseded.
    #[test]
    fn acceptance_implies_every_rule(r in any_record(), spec in req_spec(), dt in -5i64..5) {
        let now = NOW + Duration::seconds(dt);
        let built = spec.build();
        let req = spec.request(&built);
        match validate(&r, &req, now) {
            Ok(a) => {
                prop_assert_eq!(a.token, r.id);
                prop_assert_eq!(a.kind, r.kind());
                prop_assert!(r.state.is_usable());
                prop_assert_eq!(a.in_grace, r.state == State::Superseded);
                prop_assert!(r.expires_at.is_none_or(|e| e > now));
                prop_assert!(!r.limit.is_exhausted(r.uses));
                if a.in_grace {
                    prop_assert!(r.grace_until.is_some_and(|g| g > now));
                }
                prop_assert_eq!(r.effective_state(now), r.state);
            }
            Err(e) => {
                // The outside answer is one of two, and scope-only for scope problems.
                let scope = matches!(e, Rejection::InsufficientScope | Rejection::PermissionWithdrawn);
                prop_assert_eq!(e.oauth() == OAuthError::InsufficientScope, scope);
                if r.state.is_terminal() {
                    prop_assert_eq!(e, if r.state == State::Revoked { Rejection::Revoked } else { Rejection::Deleted });
                }
            }
        }
    }

    /// Time only makes things worse: a token refused for time (expiry, end of grace) at `now` is
    /// refused at every later instant, and a token accepted at `now` was accepted earlier unless
    /// it was refused for a reason time does not change.
    #[test]
    fn time_rejections_are_permanent(r in any_record(), spec in req_spec(), dt in -5i64..5, later in 0i64..10) {
        let built = spec.build();
        let req = spec.request(&built);
        let now = NOW + Duration::seconds(dt);
        if let Err(e @ (Rejection::Expired | Rejection::RotatedOut)) = validate(&r, &req, now) {
            let after = validate(&r, &req, now + Duration::seconds(later));
            prop_assert!(after.is_err(), "{:?} then {:?}", e, after);
        }
        if validate(&r, &req, now + Duration::seconds(later)).is_ok() {
            prop_assert!(validate(&r, &req, now).is_ok());
        }
    }

    /// Every request of another kind is `NotFound` for a record whose state rules pass.
    #[test]
    fn kind_mismatch_is_not_found(r in any_record(), spec in req_spec()) {
        let built = spec.build();
        let req = spec.request(&built);
        let req_kind = match spec {
            ReqSpec::Deployment => Kind::Deployment,
            ReqSpec::Onboarding { .. } => Kind::Onboarding,
            ReqSpec::Endpoint { .. } => Kind::Endpoint,
            ReqSpec::Auth { .. } => Kind::Auth,
            ReqSpec::Application { .. } => Kind::Application,
        };
        if req_kind != r.kind() && r.effective_state(NOW).is_usable() {
            prop_assert_eq!(validate(&r, &req, NOW), Err(Rejection::NotFound));
        }
    }
}
