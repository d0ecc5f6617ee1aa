//! Auth tokens: one user's REST API token, scoped to a subset of that user's permissions.

use core::fmt;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime, Time, macros::format_description};

use crate::error::{Error, InvalidInput, cut};
use crate::id::{Permission, TokenName, UserId};

/// A non-empty set of permissions a token may exercise.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(try_from = "BTreeSet<Permission>", into = "BTreeSet<Permission>")]
pub struct Scope(BTreeSet<Permission>);

impl Scope {
    /// A scope from one or more permissions.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::Empty`] when none is given.
    pub fn new(perms: impl IntoIterator<Item = Permission>) -> Result<Self, Error> {
        let set: BTreeSet<_> = perms.into_iter().collect();
        if set.is_empty() {
            return Err(InvalidInput::Empty { what: "scope" }.into());
        }
        Ok(Self(set))
    }

    /// Check that every permission of the scope is delegated to the user.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::ScopeNotHeld`] naming the first one that is not.
    pub fn check_within(&self, held: &BTreeSet<Permission>) -> Result<(), Error> {
        match self.0.iter().find(|p| !held.contains(*p)) {
            Some(p) => Err(InvalidInput::ScopeNotHeld {
                action: p.to_string(),
            }
            .into()),
            None => Ok(()),
        }
    }

    /// Whether the scope holds `perm`.
    pub fn contains(&self, perm: &Permission) -> bool {
        self.0.contains(perm)
    }

    /// The permissions.
    pub fn iter(&self) -> impl Iterator<Item = &Permission> {
        self.0.iter()
    }
}

impl TryFrom<BTreeSet<Permission>> for Scope {
    type Error = Error;
    fn try_from(s: BTreeSet<Permission>) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl From<Scope> for BTreeSet<Permission> {
    fn from(s: Scope) -> Self {
        s.0
    }
}

/// An auth token's own fields.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
pub struct AuthData {
    /// The user (technician) the token belongs to.
    pub owner: UserId,
    /// The name given to it.
    pub name: TokenName,
    /// What it may do.
    pub scope: Scope,
}

/// When an auth token expires, as the console asks for it: minutes, hours, days or a date.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Expiry {
    /// So many minutes from issue.
    Minutes(u32),
    /// So many hours from issue.
    Hours(u32),
    /// So many days from issue.
    Days(u32),
    /// At the start (00:00 UTC) of this date.
    Date(Date),
    /// At this instant (RFC 3339, e.g. `2027-01-31T10:00:00Z`).
    At(OffsetDateTime),
}

impl Expiry {
    /// Parse `90m`, `12h`, `30d` (optionally `+90m`), a date `2027-01-31` or an RFC 3339
    /// instant `2027-01-31T10:00:00Z`. Amounts are 1 to 100 years' worth. A negative amount
    /// (`-5m`) is refused: an expiry lies ahead.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::Expiry`] saying what is wrong.
    pub fn parse(input: &str) -> Result<Self, Error> {
        let bad = |why| InvalidInput::Expiry {
            input: cut(input),
            why,
        };
        let s = input.trim();
        if s.len() > 40 {
            return Err(bad("it is too long").into());
        }
        if s.starts_with('-') {
            return Err(bad("a negative amount lies in the past; an expiry lies ahead").into());
        }
        let s = s.strip_prefix('+').unwrap_or(s);
        if s.len() > 10 && s.as_bytes().get(4) == Some(&b'-') {
            let at = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| bad("it is not an RFC 3339 instant such as 2027-01-31T10:00:00Z"))?;
            return Ok(Self::At(at));
        }
        if s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') {
            let d = Date::parse(s, format_description!("[year]-[month]-[day]"))
                .map_err(|_| bad("it is not a valid calendar date"))?;
            return Ok(Self::Date(d));
        }
        let Some(unit) = s.chars().last() else {
            return Err(bad("it is empty").into());
        };
        let num = &s[..s.len() - unit.len_utf8()];
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the amount must be a whole number followed by m, h or d").into());
        }
        let n: u32 = num.parse().map_err(|_| bad("the amount is too large"))?;
        if n == 0 {
            return Err(bad("the amount must be at least 1").into());
        }
        let e = match unit {
            'm' | 'M' => Self::Minutes(n),
            'h' | 'H' => Self::Hours(n),
            'd' | 'D' => Self::Days(n),
            _ => return Err(bad("the unit must be m (minutes), h (hours) or d (days)").into()),
        };
        if e.duration().is_some_and(|d| d > Duration::days(36_525)) {
            return Err(bad("the amount is more than 100 years").into());
        }
        Ok(e)
    }

    fn duration(self) -> Option<Duration> {
        match self {
            Self::Minutes(n) => Some(Duration::minutes(i64::from(n))),
            Self::Hours(n) => Some(Duration::hours(i64::from(n))),
            Self::Days(n) => Some(Duration::days(i64::from(n))),
            Self::Date(_) | Self::At(_) => None,
        }
    }

    /// The instant this expiry names for a token issued at `now`.
    ///
    /// # Errors
    ///
    /// [`InvalidInput::NotInFuture`] when a date is not after `now`.
    pub fn resolve(self, now: OffsetDateTime) -> Result<OffsetDateTime, Error> {
        let at = match (self.duration(), self) {
            (Some(d), _) => now + d,
            (None, Self::Date(d)) => d.with_time(Time::MIDNIGHT).assume_utc(),
            (None, Self::At(t)) => t.to_offset(time::UtcOffset::UTC),
            (None, _) => now,
        };
        if at <= now {
            return Err(InvalidInput::NotInFuture {
                what: "expiry date",
            }
            .into());
        }
        Ok(at)
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Minutes(n) => write!(f, "{n}m"),
            Self::Hours(n) => write!(f, "{n}h"),
            Self::Days(n) => write!(f, "{n}d"),
            Self::Date(d) => write!(
                f,
                "{:04}-{:02}-{:02}",
                d.year(),
                u8::from(d.month()),
                d.day()
            ),
            Self::At(t) => match t.format(&time::format_description::well_known::Rfc3339) {
                Ok(text) => f.write_str(&text),
                Err(_) => Err(fmt::Error),
            },
        }
    }
}

impl core::str::FromStr for Expiry {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::datetime;

    use super::*;

    #[test]
    fn one_time_syntax_instants_signs_and_the_past() {
        let now = datetime!(2026-11-23 09:00 UTC);
        assert_eq!(
            Expiry::parse("2027-01-31T10:00:00Z")
                .unwrap()
                .resolve(now)
                .unwrap(),
            datetime!(2027-01-31 10:00 UTC)
        );
        assert_eq!(
            Expiry::parse("2027-01-31T12:00:00+02:00")
                .unwrap()
                .resolve(now)
                .unwrap(),
            datetime!(2027-01-31 10:00 UTC)
        );
        assert_eq!(Expiry::parse("+5m").unwrap(), Expiry::Minutes(5));
        let e = Expiry::parse("-5m").unwrap_err().to_string();
        assert!(e.contains("lies in the past"), "{e}");
        assert!(
            Expiry::parse("2026-11-23T08:00:00Z")
                .unwrap()
                .resolve(now)
                .is_err()
        );
        assert!(Expiry::parse("2027-01-31T25:00:00Z").is_err());
    }

    #[test]
    fn parses_console_units() {
        assert_eq!(Expiry::parse("90m").unwrap(), Expiry::Minutes(90));
        assert_eq!(Expiry::parse("12h").unwrap(), Expiry::Hours(12));
        assert_eq!(Expiry::parse("30d").unwrap(), Expiry::Days(30));
        assert!(matches!(
            Expiry::parse("2027-01-31").unwrap(),
            Expiry::Date(_)
        ));
        for bad in [
            "",
            "m",
            "0d",
            "12",
            "12x",
            "-3d",
            "2027-02-30",
            "99999999999d",
            "1.5h",
            "40000d",
        ] {
            assert!(Expiry::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolves_against_now() {
        let now = datetime!(2026-11-23 12:00 UTC);
        assert_eq!(
            Expiry::Hours(12).resolve(now).unwrap(),
            datetime!(2026-11-24 0:00 UTC)
        );
        assert!(Expiry::parse("2026-11-01").unwrap().resolve(now).is_err());
    }

    #[test]
    fn scope_must_be_within_held() {
        let p = |s: &str| Permission::parse(s).unwrap();
        let scope = Scope::new([p("reset_password")]).unwrap();
        assert!(
            scope
                .check_within(&[p("reset_password"), p("unlock")].into())
                .is_ok()
        );
        assert!(scope.check_within(&[p("unlock")].into()).is_err());
        assert!(Scope::new([]).is_err());
    }

    proptest! {
        #[test]
        fn expiry_round_trips(n in 1u32..=36_500, unit in 0..3, y in 2000i32..2200, doy in 1u16..=365) {
            let e = match unit {
                0 => Expiry::Minutes(n),
                1 => Expiry::Hours(n.min(876_000)),
                _ => Expiry::Days(n),
            };
            prop_assert_eq!(Expiry::parse(&e.to_string()).unwrap(), e);
            let d = Expiry::Date(Date::from_ordinal_date(y, doy).unwrap());
            prop_assert_eq!(Expiry::parse(&d.to_string()).unwrap(), d);
        }

        #[test]
        fn expiry_parser_never_panics(s in ".{0,40}") {
            let _ = Expiry::parse(&s);
        }
    }
}
