//! Amounts and dates for people: integer minor units with the currency's
//! exponent (no floats anywhere), and times in the bank's time zone.

use std::sync::OnceLock;

use coffer_core::time::civil_from_days;
use coffer_core::{Currency, CurrencyRegistry};

use crate::i18n::Locale;

/// China Standard Time: the bank's day, as the activity feed and limits count it.
pub const BANK_UTC_OFFSET_SECONDS: i64 = 8 * 3_600;
const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// The currency's exponent from the ISO 4217 registry the ledger uses; 2
/// for a code it does not know.
pub fn exponent(currency: &str) -> u32 {
    static REGISTRY: OnceLock<CurrencyRegistry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(CurrencyRegistry::default);
    Currency::parse(currency)
        .ok()
        .and_then(|c| registry.exponent(c))
        .map_or(2, u32::from)
}

fn symbol(currency: &str, locale: Locale) -> Option<&'static str> {
    match (currency, locale) {
        ("CNY", Locale::Zh) => Some("¥"),
        ("CNY", Locale::En) => Some("CN¥"),
        ("USD", Locale::Zh) => Some("US$"),
        ("USD", Locale::En) => Some("$"),
        ("EUR", _) => Some("€"),
        ("GBP", _) => Some("£"),
        ("HKD", _) => Some("HK$"),
        ("JPY", Locale::En) => Some("JP¥"),
        ("JPY", Locale::Zh) => Some("JP¥"),
        _ => None,
    }
}

/// `1234567` CNY → `¥12,345.67` (zh) or `CN¥12,345.67` (en); negative
/// amounts get a leading minus sign.
pub fn money(minor: i64, currency: &str, locale: Locale) -> String {
    let digits = number(minor.unsigned_abs(), exponent(currency));
    let sign = if minor < 0 { "-" } else { "" };
    match symbol(currency, locale) {
        Some(symbol) => format!("{sign}{symbol}{digits}"),
        None => format!("{sign}{currency} {digits}"),
    }
}

/// Grouped digits with the decimal point placed by the exponent.
pub fn number(minor: u64, exponent: u32) -> String {
    let scale = 10u64.pow(exponent);
    let (whole, fraction) = (minor / scale, minor % scale);
    let whole = whole.to_string();
    let mut grouped = String::with_capacity(whole.len() + whole.len() / 3);
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    if exponent == 0 {
        grouped
    } else {
        format!("{grouped}.{fraction:0width$}", width = exponent as usize)
    }
}

/// What a person typed ("12", "12.5", "1,234.56") as minor units of a
/// currency with `exponent`; `None` for anything else (more decimals than
/// the currency has, signs, letters, zero, overflow).
pub fn parse_amount(text: &str, exponent: u32) -> Option<i64> {
    let text: String = text
        .trim()
        .chars()
        .filter(|c| *c != ',' && *c != ' ')
        .collect();
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text.as_str(), ""),
    };
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > exponent as usize
    {
        return None;
    }
    let scale = 10i64.checked_pow(exponent)?;
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let fraction: i64 = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<i64>().ok()? * 10i64.checked_pow(exponent - fraction.len() as u32)?
    };
    let minor = whole.checked_mul(scale)?.checked_add(fraction)?;
    (minor > 0).then_some(minor)
}

/// Minor units as the plain decimal a form field holds ("12.50").
pub fn plain_amount(minor: i64, currency: &str) -> String {
    number(minor.unsigned_abs(), exponent(currency)).replace(',', "")
}

/// The civil date and time of `nanos` (since the Unix epoch, UTC) in the bank's zone.
pub fn bank_civil(nanos: i64) -> (i64, i64, i64, i64, i64) {
    let seconds = nanos.div_euclid(NANOS_PER_SECOND) + BANK_UTC_OFFSET_SECONDS;
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    (
        year,
        month,
        day,
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
    )
}

const MONTHS_EN: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `6 Dec 2026, 09:05` or `2026年12月6日 09:05`, China time.
pub fn date_time(nanos: i64, locale: Locale) -> String {
    let (year, month, day, hour, minute) = bank_civil(nanos);
    match locale {
        Locale::En => format!(
            "{day} {} {year}, {hour:02}:{minute:02}",
            MONTHS_EN[(month - 1).clamp(0, 11) as usize]
        ),
        Locale::Zh => format!("{year}年{month}月{day}日 {hour:02}:{minute:02}"),
    }
}

/// `Dec 2026` or `2026年12月` for `YYYY-MM`.
pub fn month_label(year: i64, month: i64, locale: Locale) -> String {
    match locale {
        Locale::En => format!("{} {year}", MONTHS_EN[(month - 1).clamp(0, 11) as usize]),
        Locale::Zh => format!("{year}年{month}月"),
    }
}

/// An RFC 3339 time from the API, shown in the bank's zone; as given when unreadable.
pub fn api_time(rfc3339: &str, locale: Locale) -> String {
    match coffer_core::Timestamp::parse_rfc3339(rfc3339) {
        Some(time) => date_time(time.as_nanos(), locale),
        None => rfc3339.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_uses_the_exponent_and_groups_digits() {
        assert_eq!(money(1_234_567, "CNY", Locale::Zh), "¥12,345.67");
        assert_eq!(money(1_234_567, "CNY", Locale::En), "CN¥12,345.67");
        assert_eq!(money(5, "USD", Locale::En), "$0.05");
        assert_eq!(money(1_000, "JPY", Locale::En), "JP¥1,000");
        assert_eq!(money(-12_345, "KWD", Locale::En), "-KWD 12.345");
        assert_eq!(money(100_000_000, "XYZ", Locale::Zh), "XYZ 1,000,000.00");
    }

    #[test]
    fn typed_amounts_become_minor_units_exactly() {
        assert_eq!(parse_amount("12", 2), Some(1_200));
        assert_eq!(parse_amount("12.5", 2), Some(1_250));
        assert_eq!(parse_amount(" 1,234.56 ", 2), Some(123_456));
        assert_eq!(parse_amount(".07", 2), Some(7));
        assert_eq!(parse_amount("0.001", 2), None);
        assert_eq!(parse_amount("0", 2), None);
        assert_eq!(parse_amount("-1", 2), None);
        assert_eq!(parse_amount("1e3", 2), None);
        assert_eq!(parse_amount("99999999999999999999", 2), None);
        assert_eq!(parse_amount("15", 0), Some(15));
        assert_eq!(plain_amount(1_250, "CNY"), "12.50");
    }

    #[test]
    fn dates_are_in_china_time() {
        // 2026-12-05T16:30:00Z is 00:30 on the 6th in Beijing.
        let nanos = coffer_core::Timestamp::parse_rfc3339("2026-12-05T16:30:00Z")
            .expect("time")
            .as_nanos();
        assert_eq!(date_time(nanos, Locale::En), "6 Dec 2026, 00:30");
        assert_eq!(date_time(nanos, Locale::Zh), "2026年12月6日 00:30");
    }
}
