//! Endpoint tokens: one primary per endpoint and method, secondaries mapped to primaries.

use core::fmt;

use serde::{Deserialize, Serialize};

use crate::id::{Description, EndpointId, TokenId, TokenName};

/// An HTTP method an endpoint token can be for.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, Ord, PartialEq, PartialOrd, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `GET`: always has a primary when token authentication is on.
    Get,
    /// `POST`: always has a primary when token authentication is on.
    Post,
    /// `DELETE`: has a primary only when the endpoint allows deleting.
    Delete,
}

impl Method {
    /// Every method.
    pub const ALL: [Self; 3] = [Self::Get, Self::Post, Self::Delete];

    /// The method's name in upper case.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Delete => "DELETE",
        }
    }

    /// Parse a method name, any case.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
    }

    /// The methods that have a primary on an endpoint.
    pub fn primaries(allow_delete: bool) -> &'static [Self] {
        if allow_delete {
            &Self::ALL
        } else {
            &Self::ALL[..2]
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// An endpoint token's own fields.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum EndpointData {
    /// The primary token of one endpoint and method.
    Primary {
        /// The endpoint.
        endpoint: EndpointId,
        /// The method.
        method: Method,
    },
    /// A secondary token, one per integrating application, mapped to primaries.
    Secondary {
        /// The application's name.
        name: TokenName,
        /// What it is for.
        description: Description,
        /// The quick on/off toggle (separate from activation).
        enabled: bool,
    },
}

/// A secondary token mapped to the primary of one endpoint and method. The mapping names the
/// slot, not the primary's id, so regenerating a primary keeps its mappings.
#[derive(Clone, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
pub struct Mapping {
    /// The secondary token.
    pub secondary: TokenId,
    /// The endpoint.
    pub endpoint: EndpointId,
    /// The method.
    pub method: Method,
    /// Turning a mapping off stops that integration alone.
    pub enabled: bool,
}
