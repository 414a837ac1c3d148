//! Money: an exact decimal with two places. Stored as `numeric(12, 2)`,
//! returned as a string (`"12.50"`) so no client parses it into a float,
//! accepted as a JSON number or a string.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest amount `numeric(12, 2)` holds.
pub const MAX_MONEY: &str = "9999999999.99";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, sqlx::Type)]
#[sqlx(transparent)]
pub struct Money(Decimal);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("must be a decimal number such as 12.50")]
    NotANumber,
    #[error("must not be negative")]
    Negative,
    #[error("must have at most two decimal places")]
    TooPrecise,
    #[error("must be at most {MAX_MONEY}")]
    TooLarge,
}

impl Money {
    pub fn new(value: Decimal) -> Result<Self, MoneyError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(MoneyError::Negative);
        }
        if value.normalize().scale() > 2 {
            return Err(MoneyError::TooPrecise);
        }
        if value > Decimal::from_str(MAX_MONEY).unwrap_or(Decimal::MAX) {
            return Err(MoneyError::TooLarge);
        }
        let mut value = value;
        value.rescale(2);
        Ok(Self(value))
    }
}

impl Money {
    /// The amount in cents (exact: at most two decimal places).
    pub fn cents(self) -> i64 {
        use rust_decimal::prelude::ToPrimitive;
        (self.0 * Decimal::from(100)).to_i64().unwrap_or(i64::MAX)
    }
}

impl FromStr for Money {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if trimmed.is_empty() || trimmed.contains(['e', 'E']) {
            return Err(MoneyError::NotANumber);
        }
        Money::new(Decimal::from_str(trimmed).map_err(|_| MoneyError::NotANumber)?)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct MoneyVisitor;
        impl serde::de::Visitor<'_> for MoneyVisitor {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount of money, as a number or a decimal string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Money, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Money, E> {
                Money::new(Decimal::from(v)).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Money, E> {
                Money::new(Decimal::from(v)).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Money, E> {
                // Through the shortest decimal representation, so 12.5 is 12.50 exactly.
                v.to_string().parse().map_err(E::custom)
            }
        }
        de.deserialize_any(MoneyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly_and_print_with_two_places() {
        assert_eq!("12.5".parse::<Money>().unwrap().to_string(), "12.50");
        assert_eq!(
            serde_json::from_str::<Money>("12.5").unwrap().to_string(),
            "12.50"
        );
        assert_eq!(
            serde_json::from_str::<Money>("\"0.10\"")
                .unwrap()
                .to_string(),
            "0.10"
        );
        assert_eq!(
            serde_json::from_str::<Money>("7").unwrap().to_string(),
            "7.00"
        );
        assert_eq!(
            serde_json::to_string(&"3.20".parse::<Money>().unwrap()).unwrap(),
            "\"3.20\""
        );
    }

    #[test]
    fn cents_are_exact() {
        assert_eq!("12.5".parse::<Money>().unwrap().cents(), 1250);
        assert_eq!(MAX_MONEY.parse::<Money>().unwrap().cents(), 999_999_999_999);
    }

    #[test]
    fn bad_amounts_are_refused() {
        assert_eq!("-1".parse::<Money>(), Err(MoneyError::Negative));
        assert_eq!("1.234".parse::<Money>(), Err(MoneyError::TooPrecise));
        assert_eq!("10000000000".parse::<Money>(), Err(MoneyError::TooLarge));
        assert_eq!("abc".parse::<Money>(), Err(MoneyError::NotANumber));
        assert_eq!("1e3".parse::<Money>(), Err(MoneyError::NotANumber));
        assert!(serde_json::from_str::<Money>("-0.5").is_err());
    }
}
