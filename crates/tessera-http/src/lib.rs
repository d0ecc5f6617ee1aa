#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod application;
mod auth;
mod bearer;
mod client_ip;
mod endpoint;
mod error;
mod guarded;
mod refusal;

pub use application::ApplicationLayer;
pub use auth::{Action, AuthGuard, AuthLayer, Authorized, BoxError, Permissions};
pub use client_ip::{ClientIp, ClientIpSource, TrustedProxy};
pub use endpoint::EndpointLayer;
pub use error::{Error, Result};
pub use guarded::{Guarded, ResponseFuture};
pub use refusal::{LOG_TARGET, Refusal};
