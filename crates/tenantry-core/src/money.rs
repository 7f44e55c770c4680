//! Money as an exact integer number of micro-units (millionths of a US dollar), so budgets add
//! and compare exactly. It reads and writes as a decimal number (`12.5`) or string (`"12.50"`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a text is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("{0:?} is not an amount: write a decimal number such as 25 or 12.50")]
    NotAnAmount(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money {
    micros: i64,
}

impl Money {
    pub const ZERO: Money = Money { micros: 0 };

    pub const fn from_micros(micros: i64) -> Self {
        Self { micros }
    }

    pub const fn micros(self) -> i64 {
        self.micros
    }

    /// Parses a decimal amount such as `12`, `12.5` or `0.000001`; more than six decimals,
    /// signs other than a leading `-`, and anything that is not a number are refused.
    pub fn parse(s: &str) -> Result<Self, MoneyError> {
        let err = || MoneyError::NotAnAmount(s.to_owned());
        let s = s.trim();
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if whole.is_empty()
            || frac.len() > 6
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(err());
        }
        let whole: i64 = whole.parse().map_err(|_| err())?;
        let frac_micros: i64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<6}").parse().map_err(|_| err())?
        };
        let micros = whole
            .checked_mul(1_000_000)
            .and_then(|m| m.checked_add(frac_micros))
            .ok_or_else(err)?;
        Ok(Self {
            micros: if neg { -micros } else { micros },
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.micros < 0 { "-" } else { "" };
        let abs = self.micros.unsigned_abs();
        let whole = abs / 1_000_000;
        let frac = abs % 1_000_000;
        if frac == 0 {
            write!(f, "{sign}{whole}")
        } else {
            let frac = format!("{frac:06}");
            write!(f, "{sign}{whole}.{}", frac.trim_end_matches('0'))
        }
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Int(i64),
            Float(f64),
            Str(String),
        }
        match Repr::deserialize(d)? {
            Repr::Int(i) => i
                .checked_mul(1_000_000)
                .map(Money::from_micros)
                .ok_or_else(|| serde::de::Error::custom("amount too large")),
            // Going through the shortest decimal text keeps 0.1 as exactly 100000 micros.
            Repr::Float(x) => Money::parse(&x.to_string()).map_err(serde::de::Error::custom),
            Repr::Str(s) => Money::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        assert_eq!(Money::parse("12.5").map(|m| m.micros()), Ok(12_500_000));
        assert_eq!(Money::parse("0.000001").map(|m| m.micros()), Ok(1));
        assert!(Money::parse("0.0000001").is_err());
        assert!(Money::parse("1e3").is_err());
        assert!(Money::parse("").is_err());
        assert_eq!(Money::from_micros(12_500_000).to_string(), "12.5");
        assert_eq!(Money::from_micros(-3).to_string(), "-0.000003");
        let m: Money = serde_json::from_str("0.1").unwrap_or_default();
        assert_eq!(m.micros(), 100_000);
        let m: Money = serde_json::from_str("\"100\"").unwrap_or_default();
        assert_eq!(m.micros(), 100_000_000);
    }
}
