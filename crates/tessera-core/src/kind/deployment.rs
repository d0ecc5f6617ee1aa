//! Mass-deployment tokens: named, optional expiry, auto-renewal with a 90-day successor.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::id::TokenName;

/// How long an auto-renewed successor is valid.
pub const RENEWAL_VALIDITY: Duration = Duration::days(90);

/// The placeholder an installer command template carries for the token.
pub const TOKEN_PLACEHOLDER: &str = "{token}";

/// A deployment token's own fields.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct DeploymentData {
    /// The name given for reference.
    pub name: TokenName,
    /// Whether a successor valid [`RENEWAL_VALIDITY`] is issued when this token expires.
    pub auto_renew: bool,
}

/// The expiry of a successor issued at `now`.
pub fn successor_expiry(now: OffsetDateTime) -> OffsetDateTime {
    now + RENEWAL_VALIDITY
}

/// Whether a token with this expiry and renewal flag is due for renewal at `now`.
pub fn due_for_renewal(
    data: &DeploymentData,
    expires_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> bool {
    data.auto_renew && expires_at.is_some_and(|e| e <= now)
}

/// Render an installer command template by replacing every `{token}` with `token`.
///
/// # Errors
///
/// [`crate::InvalidInput::Name`] when the template has no `{token}` placeholder.
pub fn render_command(template: &str, token: &str) -> Result<String, crate::Error> {
    if !template.contains(TOKEN_PLACEHOLDER) {
        return Err(crate::InvalidInput::Name {
            what: "installer command template",
            why: String::from("it has no `{token}` placeholder; add one where the token goes"),
        }
        .into());
    }
    Ok(template.replace(TOKEN_PLACEHOLDER, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_placeholder() {
        let c = render_command("msiexec /i c.msi TOKEN={token} /qn", "abc").unwrap();
        assert_eq!(c, "msiexec /i c.msi TOKEN=abc /qn");
        assert!(render_command("msiexec /i c.msi", "abc").is_err());
    }
}
