//! Currencies: ISO 4217 codes with their minor-unit exponents, plus units a bank
//! defines itself (reward points, vouchers) registered at start-up.

use std::collections::HashMap;
use std::fmt;

/// Longest currency code accepted. ISO codes are three letters; bank-defined
/// units may be longer ("POINTS").
pub const CURRENCY_CODE_LENGTH_MAX: usize = 12;

/// A currency or unit code, stored inline so that copying it costs nothing on
/// the ledger's hot path. Validity against a registry is checked at the edge.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    bytes: [u8; CURRENCY_CODE_LENGTH_MAX],
    length: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CurrencyError {
    #[error("currency code must be 3 to {CURRENCY_CODE_LENGTH_MAX} characters of A-Z, 0-9 or _")]
    Malformed,
    #[error("currency {0} is not known to this ledger")]
    Unknown(String),
    #[error("exponent {0} is out of range 0..=18")]
    ExponentOutOfRange(u8),
}

impl Currency {
    /// Parses the shape of a code (`CNY`, `POINTS`); whether the ledger knows it
    /// is the registry's question.
    pub fn parse(code: &str) -> Result<Currency, CurrencyError> {
        let valid_length = (3..=CURRENCY_CODE_LENGTH_MAX).contains(&code.len());
        let valid_chars = code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !valid_length || !valid_chars {
            return Err(CurrencyError::Malformed);
        }
        let mut bytes = [0u8; CURRENCY_CODE_LENGTH_MAX];
        bytes[..code.len()].copy_from_slice(code.as_bytes());
        Ok(Currency {
            bytes,
            length: code.len() as u8,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII bytes ever enter `bytes` (checked in `parse`).
        std::str::from_utf8(&self.bytes[..self.length as usize]).unwrap_or("")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

/// ISO 4217 active codes and their exponents (digits after the decimal point).
/// Codes with no minor unit (`XAU`, `XDR`…) are left out: a wallet cannot hold them.
const ISO_4217: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("UZS", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// The currencies one ledger accepts: all of ISO 4217 plus the bank's own units.
#[derive(Debug, Clone)]
pub struct CurrencyRegistry {
    exponents: HashMap<Currency, u8>,
}

impl Default for CurrencyRegistry {
    fn default() -> Self {
        let exponents = ISO_4217
            .iter()
            .filter_map(|(code, exponent)| Currency::parse(code).ok().map(|c| (c, *exponent)))
            .collect();
        CurrencyRegistry { exponents }
    }
}

impl CurrencyRegistry {
    /// Registers a bank-defined unit such as reward points. An ISO code cannot be
    /// redefined: its exponent is a fact, not a setting.
    pub fn define(&mut self, code: &str, exponent: u8) -> Result<Currency, CurrencyError> {
        let currency = Currency::parse(code)?;
        if exponent > 18 {
            return Err(CurrencyError::ExponentOutOfRange(exponent));
        }
        self.exponents.entry(currency).or_insert(exponent);
        Ok(currency)
    }

    /// Parses a code and checks that this ledger knows it.
    pub fn resolve(&self, code: &str) -> Result<Currency, CurrencyError> {
        let currency = Currency::parse(code)?;
        if self.exponents.contains_key(&currency) {
            Ok(currency)
        } else {
            Err(CurrencyError::Unknown(code.to_string()))
        }
    }

    pub fn exponent(&self, currency: Currency) -> Option<u8> {
        self.exponents.get(&currency).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_exponents_come_from_the_table() {
        let registry = CurrencyRegistry::default();
        for (code, exponent) in [("CNY", 2), ("JPY", 0), ("BHD", 3), ("KWD", 3), ("EUR", 2)] {
            let currency = registry.resolve(code).expect(code);
            assert_eq!(registry.exponent(currency), Some(exponent), "{code}");
        }
    }

    #[test]
    fn bank_units_are_registered_and_iso_cannot_be_redefined() {
        let mut registry = CurrencyRegistry::default();
        assert!(registry.resolve("POINTS").is_err());
        let points = registry.define("POINTS", 0).expect("define");
        assert_eq!(registry.exponent(points), Some(0));
        registry.define("CNY", 0).expect("define CNY is a no-op");
        assert_eq!(
            registry.exponent(Currency::parse("CNY").expect("CNY")),
            Some(2)
        );
    }

    #[test]
    fn malformed_codes_are_rejected() {
        for code in ["", "cn", "cny", "CN Y", "ABCDEFGHIJKLM", "€UR"] {
            assert_eq!(
                Currency::parse(code),
                Err(CurrencyError::Malformed),
                "{code:?}"
            );
        }
    }
}
