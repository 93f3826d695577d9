//! Amounts in integer minor units. A transfer amount is always positive and fits
//! the storage integer (`i64`), so every sum downstream is a checked `i64` add.

use std::fmt;

/// A positive quantity of minor units (fen, cents, yen, points).
///
/// Construction is the only validation point: a value of this type is always
/// in `1..=i64::MAX`, so the ledger never re-checks sign or width.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Amount(i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount must be a positive whole number of minor units")]
    NotPositive,
    #[error("amount does not fit in 63 bits")]
    TooLarge,
}

impl Amount {
    pub fn new(minor_units: i64) -> Result<Amount, AmountError> {
        if minor_units <= 0 {
            return Err(AmountError::NotPositive);
        }
        Ok(Amount(minor_units))
    }

    /// From an unsigned wire value (JSON numbers arrive as `u64` or `i128`).
    pub fn from_i128(minor_units: i128) -> Result<Amount, AmountError> {
        if minor_units <= 0 {
            return Err(AmountError::NotPositive);
        }
        i64::try_from(minor_units)
            .map(Amount)
            .map_err(|_| AmountError::TooLarge)
    }

    pub fn minor_units(self) -> i64 {
        self.0
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.0)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Renders minor units as a decimal string with `exponent` fraction digits,
/// exactly (`format_minor_units(-1050, 2) == "-10.50"`). For display only: the
/// API carries integers.
pub fn format_minor_units(minor_units: i64, exponent: u8) -> String {
    let negative = minor_units < 0;
    let digits = minor_units.unsigned_abs().to_string();
    let exponent = exponent as usize;
    let body = if exponent == 0 {
        digits
    } else if digits.len() > exponent {
        let (whole, fraction) = digits.split_at(digits.len() - exponent);
        format!("{whole}.{fraction}")
    } else {
        format!("0.{}{digits}", "0".repeat(exponent - digits.len()))
    };
    if negative {
        format!("-{body}")
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_positive_and_fit_i64() {
        assert_eq!(Amount::new(0), Err(AmountError::NotPositive));
        assert_eq!(Amount::new(-5), Err(AmountError::NotPositive));
        assert_eq!(Amount::new(1).map(Amount::minor_units), Ok(1));
        assert_eq!(
            Amount::from_i128(i64::MAX as i128 + 1),
            Err(AmountError::TooLarge)
        );
        assert_eq!(
            Amount::from_i128(i64::MAX as i128).map(Amount::minor_units),
            Ok(i64::MAX)
        );
    }

    #[test]
    fn formats_exactly() {
        assert_eq!(format_minor_units(1050, 2), "10.50");
        assert_eq!(format_minor_units(-5, 2), "-0.05");
        assert_eq!(format_minor_units(1234, 0), "1234");
        assert_eq!(format_minor_units(1, 3), "0.001");
        assert_eq!(format_minor_units(i64::MIN, 2), "-92233720368547758.08");
    }
}
