//! Onboarding tokens: policy and group to apply, usage limit, expiry, optional device binding.

use core::num::NonZeroU64;

use serde::{Deserialize, Serialize};

use crate::error::{Error, InvalidInput};
use crate::id::{DeviceGroup, DeviceId, PolicyId};

/// How many times a token may be used.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageLimit {
    /// At most this many uses.
    Limited(NonZeroU64),
    /// Any number of uses.
    Unlimited,
}

impl UsageLimit {
    /// Single use: the default for onboarding tokens.
    pub const SINGLE: Self = Self::Limited(NonZeroU64::MIN);

    /// At most `n` uses.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::ZeroUses`] for 0.
    pub fn uses(n: u64) -> Result<Self, Error> {
        NonZeroU64::new(n)
            .map(Self::Limited)
            .ok_or_else(|| InvalidInput::ZeroUses.into())
    }

    /// Uses left after `used`, or `None` when unlimited.
    pub fn remaining(self, used: u64) -> Option<u64> {
        match self {
            Self::Limited(n) => Some(n.get().saturating_sub(used)),
            Self::Unlimited => None,
        }
    }

    /// Whether `used` uses leave none.
    pub fn is_exhausted(self, used: u64) -> bool {
        self.remaining(used) == Some(0)
    }

    /// The limit as a number, `None` when unlimited.
    pub const fn max(self) -> Option<u64> {
        match self {
            Self::Limited(n) => Some(n.get()),
            Self::Unlimited => None,
        }
    }
}

impl Default for UsageLimit {
    fn default() -> Self {
        Self::SINGLE
    }
}

/// Which devices may redeem an onboarding token.
#[derive(Clone, Debug, Default, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceBinding {
    /// Any device.
    #[default]
    Any,
    /// Only this device.
    Device(DeviceId),
    /// The first device that redeems it, and afterwards only that one. `None` until then.
    FirstDevice(Option<DeviceId>),
}

impl DeviceBinding {
    /// Whether `device` may redeem under this binding.
    pub fn admits(&self, device: &DeviceId) -> bool {
        match self {
            Self::Any | Self::FirstDevice(None) => true,
            Self::Device(d) | Self::FirstDevice(Some(d)) => d == device,
        }
    }

    /// The binding after `device` redeemed.
    #[must_use]
    pub fn after_redeem(&self, device: &DeviceId) -> Self {
        match self {
            Self::FirstDevice(None) => Self::FirstDevice(Some(device.clone())),
            other => other.clone(),
        }
    }
}

/// An onboarding token's own fields.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct OnboardingData {
    /// The enrollment policy applied to devices that redeem it.
    pub policy: PolicyId,
    /// The group devices are placed in.
    pub group: DeviceGroup,
    /// Which devices may redeem it.
    pub binding: DeviceBinding,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(UsageLimit::default(), UsageLimit::SINGLE);
        assert!(UsageLimit::uses(0).is_err());
        let l = UsageLimit::uses(3).unwrap();
        assert_eq!(l.remaining(1), Some(2));
        assert!(l.is_exhausted(3));
        assert!(!UsageLimit::Unlimited.is_exhausted(u64::MAX));
    }

    #[test]
    fn first_device_binding_sticks() {
        let a = DeviceId::parse("A").unwrap();
        let b = DeviceId::parse("B").unwrap();
        let bind = DeviceBinding::FirstDevice(None);
        assert!(bind.admits(&b));
        let bound = bind.after_redeem(&a);
        assert!(bound.admits(&a));
        assert!(!bound.admits(&b));
    }
}
