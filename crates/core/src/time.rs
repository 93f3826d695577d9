//! Ledger time: nanoseconds since the Unix epoch, read through an injected
//! clock so that tests and simulations replay exactly.

use std::fmt;

/// Nanoseconds since 1970-01-01T00:00:00Z. The ledger makes every event's
/// timestamp unique and strictly increasing, so it doubles as the event order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(i64);

pub const NANOS_PER_MILLISECOND: i64 = 1_000_000;
pub const NANOS_PER_SECOND: i64 = 1_000_000_000;

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);

    pub const fn from_nanos(nanos: i64) -> Timestamp {
        Timestamp(nanos)
    }

    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// `self + milliseconds`, saturating: a timeout past year 2262 is "never".
    pub fn plus_millis(self, milliseconds: u64) -> Timestamp {
        let nanos = i64::try_from(milliseconds)
            .ok()
            .and_then(|ms| ms.checked_mul(NANOS_PER_MILLISECOND))
            .unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(nanos))
    }

    pub fn next(self) -> Timestamp {
        Timestamp(self.0.saturating_add(1))
    }

    /// RFC 3339 in UTC with nanoseconds, e.g. `2026-11-24T03:27:14.123456789Z`.
    pub fn to_rfc3339(self) -> String {
        let seconds = self.0.div_euclid(NANOS_PER_SECOND);
        let nanos = self.0.rem_euclid(NANOS_PER_SECOND);
        let days = seconds.div_euclid(86_400);
        let second_of_day = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            second_of_day / 3600,
            (second_of_day / 60) % 60,
            second_of_day % 60
        )
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        let bytes = text.as_bytes();
        if bytes.len() < 20
            || bytes[4] != b'-'
            || bytes[7] != b'-'
            || !matches!(bytes[10], b'T' | b't')
            || bytes[13] != b':'
            || bytes[16] != b':'
        {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> Option<i64> {
            let part = text.get(range)?;
            if part.bytes().all(|b| b.is_ascii_digit()) {
                part.parse().ok()
            } else {
                None
            }
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        if !(1..=12).contains(&month)
            || !(1..=31).contains(&day)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let mut rest = &text[19..];
        let mut nanos: i64 = 0;
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 9 {
                return None;
            }
            let value: i64 = fraction[..digits].parse().ok()?;
            nanos = value * 10_i64.pow(9 - digits as u32);
            rest = &fraction[digits..];
        }
        // Matched as bytes: slicing the text at fixed offsets panicked
        // inside a multi-byte character (`+aé12` from a query string).
        let digit = |b: u8| b.is_ascii_digit().then(|| i64::from(b - b'0'));
        let offset_seconds = match *rest.as_bytes() {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let hours = digit(h1)? * 10 + digit(h2)?;
                let minutes = digit(m1)? * 10 + digit(m2)?;
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let seconds = hours * 3600 + minutes * 60;
                if sign == b'-' {
                    -seconds
                } else {
                    seconds
                }
            }
            _ => return None,
        };
        let days = days_from_civil(year, month, day);
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
        seconds
            .checked_mul(NANOS_PER_SECOND)?
            .checked_add(nanos)
            .map(Timestamp)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_rfc3339())
    }
}

// Howard Hinnant's civil-calendar algorithms (public domain), exact in integers.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The source of "now". Production reads the system clock; tests and the
/// simulator step a manual clock.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // The one place the wall clock is read.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let t = Timestamp::from_nanos(1_795_750_034_123_456_789);
        let text = t.to_rfc3339();
        assert_eq!(text, "2026-11-27T03:27:14.123456789Z");
        assert_eq!(Timestamp::parse_rfc3339(&text), Some(t));
        assert_eq!(
            Timestamp::parse_rfc3339("1970-01-01T08:00:00+08:00"),
            Some(Timestamp::ZERO)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("1970-01-01T00:00:00.5Z"),
            Some(Timestamp::from_nanos(500_000_000))
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-24 00:00:00Z",
            "2026-11-24T00:00:00",
            "2026-11-24T00:00:00.Z",
            // Offsets: malformed, out of range, or not ASCII (must not panic).
            "2026-11-24T00:00:00+aé12",
            "2026-11-24T00:00:00+é:12",
            "2026-11-24T00:00:00++5:00",
            "2026-11-24T00:00:00+24:00",
            "2026-11-24T00:00:00+08:60",
            "2026-11-24T00:00:00+0800",
        ] {
            assert_eq!(Timestamp::parse_rfc3339(bad), None, "{bad}");
        }
    }
}
