//! Parsing Kubernetes quantities (`500m`, `2`, `1.5Gi`, `1e3`) into exact
//! values, so that a scenario's requests can be compared with its
//! authorization's quota.
//!
//! Grammar (as in apimachinery's `resource.Quantity`):
//! `[+-]<digits>[.<digits>]` followed by a binary suffix (`Ki` .. `Ei`), a
//! decimal suffix (`n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`) or an
//! exponent (`e3`, `E-2`).

use std::fmt;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::api::PositiveQuantity;

const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// An exact quantity, held in billionths of the unit (nano-cores, nano-bytes)
/// and rounded up to the next billionth, like apimachinery rounds up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount {
    nanos: i128,
}

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount { nanos: 0 };

    /// The value in billionths of the unit.
    pub fn nanos(self) -> i128 {
        self.nanos
    }

    /// The value in thousandths of the unit (for CPU: millicores), rounded up.
    pub fn millis_ceil(self) -> i128 {
        let per_milli = NANOS_PER_UNIT / 1000;
        self.nanos.div_euclid(per_milli) + i128::from(self.nanos.rem_euclid(per_milli) != 0)
    }

    /// The value in whole units (for memory: bytes), rounded up.
    pub fn units_ceil(self) -> i128 {
        self.nanos.div_euclid(NANOS_PER_UNIT)
            + i128::from(self.nanos.rem_euclid(NANOS_PER_UNIT) != 0)
    }

    /// Sum, or `None` on overflow.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.nanos
            .checked_add(other.nanos)
            .map(|nanos| Amount { nanos })
    }

    /// Greater than zero.
    pub fn is_positive(self) -> bool {
        self.nanos > 0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.nanos / NANOS_PER_UNIT;
        let frac = (self.nanos % NANOS_PER_UNIT).abs();
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let sign = if self.nanos < 0 && whole == 0 {
                "-"
            } else {
                ""
            };
            let digits = format!("{frac:09}");
            write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not of the form number + suffix.
    #[error(
        "{0:?} is not a Kubernetes quantity (expected a number with an optional suffix such as m, Ki, Mi, Gi, k, M, G or an exponent such as e3)"
    )]
    Syntax(String),
    /// Larger than a quantity may be.
    #[error("{0:?} is too large for a Kubernetes quantity")]
    TooLarge(String),
}

/// Largest magnitude apimachinery allows (2^63 - 1 units).
const MAX_NANOS: i128 = (i64::MAX as i128) * NANOS_PER_UNIT;

/// Parse a quantity string.
pub fn parse(input: &str) -> Result<Amount, QuantityError> {
    let syntax = || QuantityError::Syntax(input.to_string());
    let too_large = || QuantityError::TooLarge(input.to_string());

    let (negative, rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(syntax());
    }

    // value = digits * 10^(exp10 - frac_len) * 2^exp2
    let (exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        s if s.starts_with(['e', 'E']) => {
            let exp = &s[1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 3
            {
                return Err(syntax());
            }
            (exp.parse::<i32>().map_err(|_| syntax())?, 0)
        }
        _ => return Err(syntax()),
    };

    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(too_large());
    }
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| syntax())?
    };
    // Scale to nanos: multiply by 10^(9 + exp10 - frac_len), then by 2^exp2.
    let scale = 9 + exp10 - frac_part.len() as i32;
    let mut nanos = mantissa;
    if scale >= 0 {
        let factor = 10i128.checked_pow(scale as u32).ok_or_else(too_large)?;
        nanos = nanos.checked_mul(factor).ok_or_else(too_large)?;
    }
    nanos = nanos.checked_mul(1i128 << exp2).ok_or_else(too_large)?;
    if scale < 0 {
        // Round up what is finer than a billionth.
        let divisor = 10i128.checked_pow((-scale) as u32).ok_or_else(too_large)?;
        nanos = nanos / divisor + i128::from(nanos % divisor != 0);
    }
    if nanos > MAX_NANOS {
        return Err(too_large());
    }
    Ok(Amount {
        nanos: if negative { -nanos } else { nanos },
    })
}

/// Parse a k8s-openapi [`Quantity`].
pub fn parse_quantity(quantity: &Quantity) -> Result<Amount, QuantityError> {
    parse(&quantity.0)
}

impl PositiveQuantity {
    /// The exact value.
    pub fn amount(&self) -> Result<Amount, QuantityError> {
        parse_quantity(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(s: &str) -> i128 {
        parse(s).unwrap_or_else(|e| panic!("{e}")).nanos()
    }

    #[test]
    fn cpu_forms() {
        assert_eq!(parse("2").map(Amount::millis_ceil), Ok(2000));
        assert_eq!(parse("500m").map(Amount::millis_ceil), Ok(500));
        assert_eq!(parse("1.5").map(Amount::millis_ceil), Ok(1500));
        assert_eq!(parse("0.1").map(Amount::millis_ceil), Ok(100));
        assert_eq!(parse(".5").map(Amount::millis_ceil), Ok(500));
        assert_eq!(parse("100u").map(Amount::millis_ceil), Ok(1), "rounded up");
        assert_eq!(nanos("250n"), 250);
    }

    #[test]
    fn memory_forms() {
        assert_eq!(parse("1Ki").map(Amount::units_ceil), Ok(1024));
        assert_eq!(
            parse("1.5Gi").map(Amount::units_ceil),
            Ok(1536 * 1024 * 1024)
        );
        assert_eq!(parse("128974848").map(Amount::units_ceil), Ok(128_974_848));
        assert_eq!(parse("129e6").map(Amount::units_ceil), Ok(129_000_000));
        assert_eq!(parse("129M").map(Amount::units_ceil), Ok(129_000_000));
        assert_eq!(parse("123Mi").map(Amount::units_ceil), Ok(128_974_848));
        assert_eq!(parse("1Ei").map(Amount::units_ceil), Ok(1i128 << 60));
        assert_eq!(parse("1E").map(Amount::units_ceil), Ok(10i128.pow(18)));
        assert_eq!(parse("1e-3").map(Amount::millis_ceil), Ok(1));
    }

    #[test]
    fn ordering_is_by_value_not_by_spelling() {
        assert!(parse("1Gi").ok() > parse("1G").ok());
        assert_eq!(parse("1000m"), parse("1"));
        assert_eq!(parse("1024Mi"), parse("1Gi"));
        assert!(parse("999m").ok() < parse("1").ok());
    }

    #[test]
    fn signs_and_zero() {
        assert_eq!(nanos("-1"), -NANOS_PER_UNIT);
        assert_eq!(nanos("+1"), NANOS_PER_UNIT);
        assert!(!parse("0").map(Amount::is_positive).unwrap_or(true));
        assert!(parse("1m").map(Amount::is_positive).unwrap_or(false));
    }

    #[test]
    fn malformed_quantities_are_rejected() {
        for bad in [
            "", "Gi", "1.2.3", "1 Gi", "1gi", "1KiB", "abc", "1e", "1e+", "--1", ".", "1ee3",
        ] {
            assert_eq!(
                parse(bad),
                Err(QuantityError::Syntax(bad.to_string())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn huge_quantities_are_rejected_not_wrapped() {
        assert_eq!(parse("10Ei"), Err(QuantityError::TooLarge("10Ei".into())));
        assert!(parse("1e300").is_err());
        assert!(parse("9999999999999999999999999999999999").is_err());
        assert!(parse("8Ei").is_err());
        assert!(parse("7Ei").is_ok());
    }

    #[test]
    fn display_shows_the_exact_value() {
        assert_eq!(parse("1.5").map(|a| a.to_string()), Ok("1.5".to_string()));
        assert_eq!(parse("2Ki").map(|a| a.to_string()), Ok("2048".to_string()));
        assert_eq!(
            parse("-500m").map(|a| a.to_string()),
            Ok("-0.5".to_string())
        );
    }

    #[test]
    fn sums_add_exactly() {
        let total = parse("500m")
            .ok()
            .and_then(|a| parse("1.5").ok().and_then(|b| a.checked_add(b)));
        assert_eq!(total, parse("2").ok());
    }
}
