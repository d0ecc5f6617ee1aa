//! Parsers for the values operators type: durations, instants, expiries and id lists.

use std::collections::BTreeSet;

use tessera::core::id::Permission;
use tessera::core::kind::auth::Expiry;
use tessera::core::kind::endpoint::Method;
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime, Time};

use crate::cli::MethodArg;
use crate::error::{CliError, Result};

/// A duration such as `90s`, `30m`, `12h` or `7d`: a whole number of at most 10 digits and a
/// unit.
///
/// # Errors
///
/// A usage error naming `what` and the accepted forms.
pub(crate) fn duration(what: &str, input: &str) -> Result<Duration> {
    let bad = || {
        CliError::usage(format!(
            "{what} `{}` is not a duration; write a whole number and a unit, e.g. 90s, 30m, 12h or 7d",
            crate::output::cut(input, 32)
        ))
    };
    let s = input.trim();
    if s.starts_with('-') {
        return Err(CliError::usage(format!(
            "{what} `{}` is negative; it is a length of time ahead, e.g. 90s, 30m, 12h or 7d",
            crate::output::cut(input, 32)
        )));
    }
    let unit = s.chars().last().ok_or_else(bad)?;
    let num = &s[..s.len() - unit.len_utf8()];
    if num.is_empty() || num.len() > 10 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: i64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        's' => Duration::seconds(n),
        'm' => Duration::minutes(n),
        'h' => Duration::hours(n),
        'd' => Duration::days(n),
        _ => return Err(bad()),
    };
    if d > Duration::days(36_525) {
        return Err(CliError::usage(format!(
            "{what} is more than 100 years; shorten it"
        )));
    }
    Ok(d)
}

/// An expiry (`90m`, `12h`, `30d`, `2027-01-31`) resolved against `now`.
///
/// # Errors
///
/// A usage error when it cannot be read or is not in the future.
pub(crate) fn expiry(input: &str, now: OffsetDateTime) -> Result<OffsetDateTime> {
    Ok(Expiry::parse(input)?.resolve(now)?)
}

/// An instant for filters, in the one time syntax every option uses: RFC 3339, a date
/// (midnight UTC) or a duration from `now`, counted back unless it says `+` (`24h` and `-24h`
/// are a day ago, `+1h` an hour ahead).
///
/// # Errors
///
/// A usage error naming `what`.
pub(crate) fn instant(what: &str, input: &str, now: OffsetDateTime) -> Result<OffsetDateTime> {
    let s = input.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    if let Ok(d) = Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")) {
        return Ok(d.with_time(Time::MIDNIGHT).assume_utc());
    }
    let (ahead, amount) = match (s.strip_prefix('+'), s.strip_prefix('-')) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => (false, s),
    };
    match duration(what, amount) {
        Ok(d) if ahead => Ok(now + d),
        Ok(age) => Ok(now - age),
        Err(_) => Err(CliError::usage(format!(
            "{what} `{}` is not a time; write RFC 3339 (2026-01-31T12:00:00Z), a date (2026-01-31) or a duration back from now (24h, -7d) or ahead (+1h)",
            crate::output::cut(input, 40)
        ))),
    }
}

/// A set of permissions from a comma-separated list.
///
/// # Errors
///
/// A usage error naming the first invalid one.
pub(crate) fn permissions(what: &str, items: &[String]) -> Result<BTreeSet<Permission>> {
    list(what, items)?
        .into_iter()
        .map(|s| Permission::parse(s).map_err(|e| CliError::usage(format!("{what}: {e}"))))
        .collect()
}

/// The entries of a comma-separated option, trimmed. An empty entry (`a,,b`, a trailing comma)
/// is refused rather than dropped: it is most often a value lost in a script.
///
/// # Errors
///
/// A usage error naming `what` and the entry's position.
pub(crate) fn list<'a>(what: &str, items: &'a [String]) -> Result<Vec<&'a str>> {
    items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let s = s.trim();
            if s.is_empty() {
                Err(CliError::usage(format!(
                    "{what} has an empty entry at position {}; write the values separated by single commas, e.g. a,b",
                    i + 1
                )))
            } else {
                Ok(s)
            }
        })
        .collect()
}

/// The core method for a command-line method.
pub(crate) const fn method(m: MethodArg) -> Method {
    match m {
        MethodArg::Get => Method::Get,
        MethodArg::Post => Method::Post,
        MethodArg::Delete => Method::Delete,
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("grace", "90s").unwrap(), Duration::seconds(90));
        assert_eq!(duration("grace", "30m").unwrap(), Duration::minutes(30));
        assert_eq!(duration("grace", "12h").unwrap(), Duration::hours(12));
        assert_eq!(duration("grace", "7d").unwrap(), Duration::days(7));
        for bad in [
            "",
            "d",
            "7",
            "7w",
            "-1d",
            "1.5h",
            "99999999999d",
            "40000d",
            "7dd",
            "٣d",
        ] {
            assert!(duration("grace", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn instants() {
        let now = datetime!(2026-02-01 0:00 UTC);
        assert_eq!(
            instant("since", "2026-01-31", now).unwrap(),
            datetime!(2026-01-31 0:00 UTC)
        );
        assert_eq!(
            instant("since", "24h", now).unwrap(),
            datetime!(2026-01-31 0:00 UTC)
        );
        assert_eq!(
            instant("since", "2026-01-31T12:00:00Z", now).unwrap(),
            datetime!(2026-01-31 12:00 UTC)
        );
        assert!(instant("since", "yesterday", now).is_err());
    }

    #[test]
    fn expiries_resolve_in_the_future() {
        let now = datetime!(2026-01-01 0:00 UTC);
        assert_eq!(expiry("30d", now).unwrap(), datetime!(2026-01-31 0:00 UTC));
        assert!(expiry("2020-01-01", now).is_err());
        assert!(expiry("soon", now).is_err());
    }
}
