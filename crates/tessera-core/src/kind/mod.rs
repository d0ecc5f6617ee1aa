//! Per-kind records and rules, one module per product the design takes them from.

pub mod application;
pub mod auth;
pub mod deployment;
pub mod endpoint;
pub mod onboarding;

use serde::{Deserialize, Serialize};

use crate::format::Kind;

pub use application::ApplicationData;
pub use auth::AuthData;
pub use deployment::DeploymentData;
pub use endpoint::EndpointData;
pub use onboarding::OnboardingData;

/// What a token record holds beyond the fields every kind shares.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KindData {
    /// Mass-deployment token.
    Deployment(DeploymentData),
    /// Onboarding token.
    Onboarding(OnboardingData),
    /// Endpoint primary or secondary token.
    Endpoint(EndpointData),
    /// Per-user auth token.
    Auth(AuthData),
    /// Application bearer token.
    Application(ApplicationData),
}

impl KindData {
    /// The kind this data belongs to.
    pub const fn kind(&self) -> Kind {
        match self {
            Self::Deployment(_) => Kind::Deployment,
            Self::Onboarding(_) => Kind::Onboarding,
            Self::Endpoint(_) => Kind::Endpoint,
            Self::Auth(_) => Kind::Auth,
            Self::Application(_) => Kind::Application,
        }
    }

    /// The name shown in listings, when the kind has one.
    pub fn display_name(&self) -> Option<&str> {
        match self {
            Self::Deployment(d) => Some(d.name.as_str()),
            Self::Onboarding(_) => None,
            Self::Endpoint(EndpointData::Secondary { name, .. }) => Some(name.as_str()),
            Self::Endpoint(EndpointData::Primary { .. }) => None,
            Self::Auth(a) => Some(a.name.as_str()),
            Self::Application(a) => Some(a.name.as_str()),
        }
    }
}
