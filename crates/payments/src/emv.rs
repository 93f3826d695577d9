//! Merchant-presented QR payloads in the EMVCo format (EMV® QR Code
//! Specification for Payment Systems, Merchant-Presented Mode, v1.1):
//! a string of `tag(2 digits) length(2 digits) value` fields, ending with a
//! CRC-16/CCITT-FALSE over everything before its value (tag 63).
//!
//! `encode` writes Coffer's payloads; `parse` checks any scanned payload's
//! structure and CRC before anything trusts a field of it, then reads the
//! Coffer merchant account template (tag 26: our GUID and the merchant id).
//! Lengths count characters, not bytes (the spec's alternate-language
//! template carries UTF-8 text); the CRC runs over the UTF-8 bytes.

use std::collections::BTreeMap;

/// The globally unique identifier in Coffer's merchant account template
/// (a reverse domain name, as the spec allows for tags 26–51).
pub const COFFER_GUID: &str = "com.coffer.pay";
/// Coffer's merchant account information template tag.
pub const COFFER_TEMPLATE_TAG: &str = "26";
/// Scanned payloads longer than this are refused before parsing (the
/// largest QR code holds about 4,000 alphanumeric characters; real MPM
/// payloads are a few hundred).
pub const PAYLOAD_LENGTH_MAX: usize = 512;
/// Field limits from the specification.
pub const MERCHANT_NAME_LENGTH_MAX: usize = 25;
pub const MERCHANT_CITY_LENGTH_MAX: usize = 15;
pub const REFERENCE_LENGTH_MAX: usize = 25;
const AMOUNT_LENGTH_MAX: usize = 13;

/// Static codes (printed at the till; the customer types the amount) or
/// dynamic ones (made for one sale, with its amount).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiation {
    Static,
    Dynamic,
}

impl Initiation {
    fn code(self) -> &'static str {
        match self {
            Initiation::Static => "11",
            Initiation::Dynamic => "12",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Initiation::Static => "static",
            Initiation::Dynamic => "dynamic",
        }
    }
}

/// A payload's rejection: a stable code for the API and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    #[error("the QR payload is malformed: {0}")]
    Malformed(String),
    #[error("the QR payload's checksum does not match: it was damaged or altered")]
    CrcMismatch,
    #[error("the QR payload lacks {0}")]
    Missing(&'static str),
    #[error("this QR code is not for a Coffer merchant")]
    NotCoffer,
    #[error("the QR payload's currency {0} is not supported")]
    UnsupportedCurrency(String),
}

impl QrError {
    pub fn code(&self) -> &'static str {
        match self {
            QrError::Malformed(_) => "qr_malformed",
            QrError::CrcMismatch => "qr_checksum_mismatch",
            QrError::Missing(_) => "qr_field_missing",
            QrError::NotCoffer => "qr_not_coffer",
            QrError::UnsupportedCurrency(_) => "qr_currency_unsupported",
        }
    }
}

/// CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no
/// reflection, no final XOR (the spec's tag 63 checksum).
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for byte in bytes {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// ISO 4217 numeric codes Coffer knows, with the alphabetic code and the
/// minor-unit exponent the amount field is written in.
const CURRENCIES: [(&str, &str, u32); 6] = [
    ("156", "CNY", 2),
    ("344", "HKD", 2),
    ("446", "MOP", 2),
    ("840", "USD", 2),
    ("978", "EUR", 2),
    ("392", "JPY", 0),
];

/// (numeric code, exponent) of an alphabetic currency code.
pub fn currency_numeric(alpha: &str) -> Option<(&'static str, u32)> {
    CURRENCIES
        .iter()
        .find(|(_, a, _)| *a == alpha)
        .map(|(n, _, e)| (*n, *e))
}

fn currency_alpha(numeric: &str) -> Option<(&'static str, u32)> {
    CURRENCIES
        .iter()
        .find(|(n, _, _)| *n == numeric)
        .map(|(_, a, e)| (*a, *e))
}

/// Minor units as the spec's decimal text ("12.50" for 1250 fen).
pub fn format_amount(minor: i64, exponent: u32) -> String {
    if exponent == 0 {
        return minor.to_string();
    }
    let scale = 10i64.pow(exponent);
    format!(
        "{}.{:0width$}",
        minor / scale,
        minor % scale,
        width = exponent as usize
    )
}

/// The spec's decimal text back to minor units: digits, at most one `.`
/// with at most `exponent` digits after it; positive; checked arithmetic.
pub fn parse_amount(text: &str, exponent: u32) -> Result<i64, QrError> {
    let bad = || QrError::Malformed(format!("amount {text:?}"));
    if text.is_empty() || text.len() > AMOUNT_LENGTH_MAX {
        return Err(bad());
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, f),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let dangling_mark = text.contains('.') && fraction.is_empty();
    if !digits(whole)
        || !digits(fraction)
        || whole.is_empty() && fraction.is_empty()
        || dangling_mark
    {
        return Err(bad());
    }
    if fraction.len() > exponent as usize {
        return Err(bad());
    }
    let scale = 10i64.pow(exponent);
    let whole_value: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let mut fraction_value: i64 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| bad())?
    };
    for _ in fraction.len()..exponent as usize {
        fraction_value *= 10;
    }
    let minor = whole_value
        .checked_mul(scale)
        .and_then(|v| v.checked_add(fraction_value))
        .ok_or_else(bad)?;
    if minor <= 0 {
        return Err(bad());
    }
    Ok(minor)
}

/// Reads `tag length value` fields of one level (the top level or a template).
pub fn fields(text: &str) -> Result<Vec<(String, String)>, QrError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        if at + 4 > chars.len() {
            return Err(QrError::Malformed(format!("truncated field at {at}")));
        }
        let tag: String = chars[at..at + 2].iter().collect();
        let length: String = chars[at + 2..at + 4].iter().collect();
        if !tag.bytes().all(|b| b.is_ascii_digit()) || !length.bytes().all(|b| b.is_ascii_digit()) {
            return Err(QrError::Malformed(format!("bad tag or length at {at}")));
        }
        let length: usize = length
            .parse()
            .map_err(|_| QrError::Malformed(format!("bad length at {at}")))?;
        if length == 0 || at + 4 + length > chars.len() {
            return Err(QrError::Malformed(format!(
                "field {tag} overruns the payload"
            )));
        }
        out.push((tag, chars[at + 4..at + 4 + length].iter().collect()));
        at += 4 + length;
    }
    Ok(out)
}

fn field(tag: &str, value: &str) -> String {
    format!("{tag}{:02}{value}", value.chars().count())
}

/// Checks the structure and the CRC of any MPM payload; returns its
/// top-level fields by tag (each at most once).
pub fn check(payload: &str) -> Result<BTreeMap<String, String>, QrError> {
    if payload.len() > PAYLOAD_LENGTH_MAX {
        return Err(QrError::Malformed("too long".into()));
    }
    let list = fields(payload)?;
    let Some((last_tag, last_value)) = list.last() else {
        return Err(QrError::Malformed("empty".into()));
    };
    if last_tag != "63" || last_value.len() != 4 {
        return Err(QrError::Missing("a CRC (tag 63) as the last field"));
    }
    let expected = u16::from_str_radix(last_value, 16)
        .map_err(|_| QrError::Malformed("the CRC is not hexadecimal".into()))?;
    // The CRC covers everything up to and including "6304".
    let covered = &payload[..payload.len() - 4];
    if crc16(covered.as_bytes()) != expected {
        return Err(QrError::CrcMismatch);
    }
    if list.first().map(|(t, v)| (t.as_str(), v.as_str())) != Some(("00", "01")) {
        return Err(QrError::Missing(
            "the payload format indicator 01 (tag 00) first",
        ));
    }
    let mut map = BTreeMap::new();
    for (tag, value) in list {
        if map.insert(tag.clone(), value).is_some() {
            return Err(QrError::Malformed(format!("tag {tag} appears twice")));
        }
    }
    Ok(map)
}

/// A Coffer merchant's payment code, as encoded and as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantQr {
    pub initiation: Initiation,
    pub merchant_id: String,
    /// ISO 18245 merchant category code, four digits.
    pub mcc: String,
    /// ISO 4217 alphabetic code (the payload carries the numeric one).
    pub currency: String,
    /// Minor units; always present on dynamic codes.
    pub amount: Option<i64>,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub name: String,
    pub city: String,
    /// The merchant's order reference (additional data, bill number).
    pub bill_number: Option<String>,
    /// Coffer's payment id for a dynamic code (additional data, reference label).
    pub reference: Option<String>,
}

impl MerchantQr {
    /// The payload string, CRC included.
    pub fn encode(&self) -> Result<String, QrError> {
        let (numeric, exponent) = currency_numeric(&self.currency)
            .ok_or_else(|| QrError::UnsupportedCurrency(self.currency.clone()))?;
        let mut out = String::new();
        out.push_str(&field("00", "01"));
        out.push_str(&field("01", self.initiation.code()));
        let template = format!(
            "{}{}",
            field("00", COFFER_GUID),
            field("01", &self.merchant_id)
        );
        out.push_str(&field(COFFER_TEMPLATE_TAG, &template));
        out.push_str(&field("52", &self.mcc));
        out.push_str(&field("53", numeric));
        if let Some(amount) = self.amount {
            out.push_str(&field("54", &format_amount(amount, exponent)));
        }
        out.push_str(&field("58", &self.country));
        out.push_str(&field(
            "59",
            &truncate(&self.name, MERCHANT_NAME_LENGTH_MAX),
        ));
        out.push_str(&field(
            "60",
            &truncate(&self.city, MERCHANT_CITY_LENGTH_MAX),
        ));
        let mut additional = String::new();
        if let Some(bill) = &self.bill_number {
            additional.push_str(&field("01", bill));
        }
        if let Some(reference) = &self.reference {
            additional.push_str(&field("05", reference));
        }
        if !additional.is_empty() {
            out.push_str(&field("62", &additional));
        }
        out.push_str("6304");
        let crc = crc16(out.as_bytes());
        out.push_str(&format!("{crc:04X}"));
        Ok(out)
    }

    /// Checks a scanned payload (structure, CRC, required fields) and reads
    /// Coffer's merchant from it.
    pub fn parse(payload: &str) -> Result<MerchantQr, QrError> {
        let map = check(payload)?;
        let required =
            |tag: &str, what: &'static str| map.get(tag).cloned().ok_or(QrError::Missing(what));
        let initiation = match map.get("01").map(String::as_str) {
            Some("11") | None => Initiation::Static,
            Some("12") => Initiation::Dynamic,
            Some(other) => {
                return Err(QrError::Malformed(format!("point of initiation {other:?}")))
            }
        };
        let mcc = required("52", "a merchant category code (tag 52)")?;
        if mcc.len() != 4 || !mcc.bytes().all(|b| b.is_ascii_digit()) {
            return Err(QrError::Malformed("merchant category code".into()));
        }
        let numeric = required("53", "a currency (tag 53)")?;
        let (currency, exponent) = currency_alpha(&numeric)
            .ok_or_else(|| QrError::UnsupportedCurrency(numeric.clone()))?;
        let amount = map
            .get("54")
            .map(|text| parse_amount(text, exponent))
            .transpose()?;
        if initiation == Initiation::Dynamic && amount.is_none() {
            return Err(QrError::Missing("an amount (tag 54) on a dynamic code"));
        }
        let country = required("58", "a country code (tag 58)")?;
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(QrError::Malformed("country code".into()));
        }
        let name = required("59", "a merchant name (tag 59)")?;
        let city = required("60", "a merchant city (tag 60)")?;
        let mut bill_number = None;
        let mut reference = None;
        if let Some(additional) = map.get("62") {
            for (tag, value) in fields(additional)? {
                match tag.as_str() {
                    "01" => bill_number = Some(value),
                    "05" => reference = Some(value),
                    _ => {}
                }
            }
        }
        // Merchant account templates are tags 02–51; Coffer's is one of them.
        let mut merchant_id = None;
        for (tag, value) in &map {
            let Ok(number) = tag.parse::<u8>() else {
                continue;
            };
            if !(26..=51).contains(&number) {
                continue;
            }
            let inner = fields(value)?;
            let guid = inner.iter().find(|(t, _)| t == "00").map(|(_, v)| v);
            if guid.is_some_and(|g| g.eq_ignore_ascii_case(COFFER_GUID)) {
                merchant_id = inner
                    .iter()
                    .find(|(t, _)| t == "01")
                    .map(|(_, v)| v.clone());
            }
        }
        let has_account = map
            .keys()
            .any(|t| t.parse::<u8>().is_ok_and(|n| (2..=51).contains(&n)));
        if !has_account {
            return Err(QrError::Missing(
                "merchant account information (tags 02–51)",
            ));
        }
        let merchant_id = merchant_id.ok_or(QrError::NotCoffer)?;
        Ok(MerchantQr {
            initiation,
            merchant_id,
            mcc,
            currency: currency.to_string(),
            amount,
            country,
            name,
            city,
            bill_number,
            reference,
        })
    }
}

/// The first `max` characters (names and cities have spec limits).
fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The payload of the specification's own example (EMV QRCPS MPM v1.1,
    /// appendix A), with its alternate-language template in Chinese.
    const SPEC_EXAMPLE: &str = "00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678520441115802CN5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京540523.7253031565502016233030412340603***0708A60086670902ME91320016A0112233449988770708123456786304A13A";

    #[test]
    fn crc_is_ccitt_false() {
        // The catalogue check value of CRC-16/CCITT-FALSE.
        assert_eq!(crc16(b"123456789"), 0x29B1);
        assert_eq!(crc16(b""), 0xFFFF);
    }

    #[test]
    fn the_specifications_example_checks_out() {
        let map = check(SPEC_EXAMPLE).expect("valid");
        assert_eq!(map["59"], "BEST TRANSPORT");
        assert_eq!(map["54"], "23.72");
        assert_eq!(map["53"], "156");
        // Lengths count characters: the Chinese template is 20 of them.
        assert_eq!(map["64"], "0002ZH0104最佳运输0202北京");
        // It is a valid payload, but not a Coffer merchant's.
        assert_eq!(MerchantQr::parse(SPEC_EXAMPLE), Err(QrError::NotCoffer));
        let damaged = SPEC_EXAMPLE.replace("23.72", "93.72");
        assert_eq!(check(&damaged), Err(QrError::CrcMismatch));
    }

    fn sample(initiation: Initiation, amount: Option<i64>) -> MerchantQr {
        MerchantQr {
            initiation,
            merchant_id: "mer_0123456789abcdef".into(),
            mcc: "5814".into(),
            currency: "CNY".into(),
            amount,
            country: "CN".into(),
            name: "Lotus Coffee".into(),
            city: "Shanghai".into(),
            bill_number: amount.map(|_| "ORDER-42".into()),
            reference: amount.map(|_| "mpy_1".into()),
        }
    }

    #[test]
    fn static_and_dynamic_codes_round_trip() {
        let fixed = sample(Initiation::Static, None);
        let payload = fixed.encode().expect("encode");
        assert!(payload.starts_with("000201010211"));
        assert!(payload.contains("5204581453031565802CN"));
        assert_eq!(MerchantQr::parse(&payload), Ok(fixed));
        let sale = sample(Initiation::Dynamic, Some(1_250));
        let payload = sale.encode().expect("encode");
        assert!(payload.starts_with("000201010212"));
        assert!(payload.contains("540512.50"));
        assert!(payload.contains("6221"));
        assert_eq!(MerchantQr::parse(&payload), Ok(sale));
    }

    #[test]
    fn damaged_and_malformed_payloads_are_refused() {
        let payload = sample(Initiation::Dynamic, Some(1_250))
            .encode()
            .expect("encode");
        // One changed character of the amount: the CRC no longer matches.
        let altered = payload.replace("12.50", "92.50");
        assert_eq!(MerchantQr::parse(&altered), Err(QrError::CrcMismatch));
        // No CRC, truncated, garbage, too long.
        assert!(matches!(
            MerchantQr::parse(&payload[..payload.len() - 8]),
            Err(QrError::Missing(_) | QrError::Malformed(_))
        ));
        assert!(matches!(
            MerchantQr::parse("hello"),
            Err(QrError::Malformed(_))
        ));
        assert!(matches!(
            MerchantQr::parse(&"0".repeat(600)),
            Err(QrError::Malformed(_))
        ));
        // A well-formed payload with a correct CRC but no format indicator.
        let mut body = "0102115204581453031565802CN5902AB6002SH6304".to_string();
        body.push_str(&format!("{:04X}", crc16(body.as_bytes())));
        assert!(matches!(MerchantQr::parse(&body), Err(QrError::Missing(_))));
        // A dynamic code without an amount.
        let mut bare = sample(Initiation::Dynamic, None);
        bare.bill_number = None;
        let text = bare.encode().expect("encode");
        assert!(matches!(MerchantQr::parse(&text), Err(QrError::Missing(_))));
    }

    #[test]
    fn amounts_are_exact_decimal_text() {
        assert_eq!(format_amount(1_250, 2), "12.50");
        assert_eq!(format_amount(5, 2), "0.05");
        assert_eq!(format_amount(700, 0), "700");
        assert_eq!(parse_amount("12.5", 2), Ok(1_250));
        assert_eq!(parse_amount("12", 2), Ok(1_200));
        assert_eq!(parse_amount(".05", 2), Ok(5));
        for bad in [
            "",
            "0",
            "0.00",
            "-1",
            "1.234",
            "1e3",
            "1,00",
            "12.",
            ".",
            "99999999999999",
        ] {
            assert!(parse_amount(bad, 2).is_err(), "{bad}");
        }
        assert!(parse_amount("1.5", 0).is_err());
    }
}
