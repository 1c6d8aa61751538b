//! Kubernetes quantities (`resource.Quantity`): `2Gi`, `500M`, `1.5e9`, `250m`.
//!
//! The grammar, from `k8s.io/apimachinery/pkg/api/resource`:
//! a signed decimal number (`1`, `1.5`, `1.`, `.5`) followed by nothing, a binary SI suffix
//! (`Ki` .. `Ei`, powers of 1024), a decimal SI suffix (`n u m k M G T P E`) or a decimal
//! exponent (`e3`, `E-2`).

use thiserror::Error;

/// Why a quantity did not parse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum QuantityError {
    #[error("quantity is empty")]
    Empty,
    #[error("quantity {0:?} has no number")]
    NoNumber(String),
    #[error(
        "quantity {0:?} has an unknown suffix {1:?}; use Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P, E or an exponent such as e9"
    )]
    Suffix(String, String),
}

/// Parse a quantity into its value, in base units (bytes, for a size).
pub fn parse(text: &str) -> Result<f64, QuantityError> {
    if text.is_empty() {
        return Err(QuantityError::Empty);
    }
    let (sign, rest) = match text.as_bytes()[0] {
        b'-' => (-1.0, &text[1..]),
        b'+' => (1.0, &text[1..]),
        _ => (1.0, text),
    };
    let number_len = rest
        .bytes()
        .position(|b| !(b.is_ascii_digit() || b == b'.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let dots = number.bytes().filter(|&b| b == b'.').count();
    if number.is_empty() || number == "." || dots > 1 {
        return Err(QuantityError::NoNumber(text.to_string()));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| QuantityError::NoNumber(text.to_string()))?;
    let multiplier = multiplier(suffix)
        .ok_or_else(|| QuantityError::Suffix(text.to_string(), suffix.to_string()))?;
    Ok(sign * value * multiplier)
}

fn multiplier(suffix: &str) -> Option<f64> {
    const KI: f64 = 1024.0;
    Some(match suffix {
        "" => 1.0,
        "Ki" => KI,
        "Mi" => KI.powi(2),
        "Gi" => KI.powi(3),
        "Ti" => KI.powi(4),
        "Pi" => KI.powi(5),
        "Ei" => KI.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            10f64.powi(exponent.parse::<i32>().ok()?)
        }
    })
}

/// Parse a quantity as a whole number of bytes, rounding a fraction up, as Kubernetes does when
/// it provisions storage.
pub fn parse_bytes(text: &str) -> Result<u64, QuantityError> {
    let value = parse(text)?;
    if value <= 0.0 {
        return Ok(0);
    }
    Ok(value.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_suffix_kind() {
        assert_eq!(parse("2Gi").unwrap(), 2.0 * 1024.0 * 1024.0 * 1024.0);
        assert_eq!(parse("500M").unwrap(), 500e6);
        assert_eq!(parse("1.5e3").unwrap(), 1500.0);
        assert_eq!(parse("250m").unwrap(), 0.25);
        assert_eq!(parse(".5Ki").unwrap(), 512.0);
        assert_eq!(parse("1.").unwrap(), 1.0);
        assert_eq!(parse("+3").unwrap(), 3.0);
        assert_eq!(parse("-3").unwrap(), -3.0);
        assert_eq!(parse("1E-2").unwrap(), 0.01);
        assert_eq!(parse_bytes("1.5Ki").unwrap(), 1536);
        assert_eq!(parse_bytes("0.1").unwrap(), 1);
    }

    #[test]
    fn rejects_malformed_quantities() {
        assert_eq!(parse(""), Err(QuantityError::Empty));
        assert!(matches!(parse("Gi"), Err(QuantityError::NoNumber(_))));
        assert!(matches!(parse("."), Err(QuantityError::NoNumber(_))));
        assert!(matches!(parse("1.2.3"), Err(QuantityError::NoNumber(_))));
        assert!(matches!(parse("2GB"), Err(QuantityError::Suffix(_, s)) if s == "GB"));
        assert!(matches!(parse("2e"), Err(QuantityError::Suffix(..))));
        assert!(matches!(parse("2 Gi"), Err(QuantityError::Suffix(..))));
    }

    #[test]
    fn schema_pattern_agrees_with_the_parser_on_signs() {
        let pattern = regex_lite(crate::schema::NON_NEGATIVE_QUANTITY);
        for ok in ["2Gi", "0", "+1", "1.5e9", ".5", "10k"] {
            assert!(pattern(ok), "{ok} should match");
            assert!(parse(ok).unwrap() >= 0.0);
        }
        for bad in ["-1", "-2Gi", "1GB", ""] {
            assert!(!pattern(bad), "{bad} should not match");
        }
    }

    /// The schema's regex, checked with the same engine the schema tests use.
    fn regex_lite(pattern: &str) -> impl Fn(&str) -> bool {
        let schema = serde_json::json!({"type": "string", "pattern": pattern});
        let validator = jsonschema::validator_for(&schema).unwrap();
        move |s| validator.is_valid(&serde_json::json!(s))
    }
}
