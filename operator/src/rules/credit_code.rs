//! Unified social credit code (统一社会信用代码), GB 32100-2015.
//!
//! 18 characters from a 31-character alphabet (digits and capital letters
//! without I, O, Z, S, V); characters 3 to 8 are digits (the administrative
//! division); the 18th is a check character computed from the first 17.

use std::sync::LazyLock;

/// The code alphabet; a character's value is its index.
pub const ALPHABET: &str = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/// Weight of each of the first 17 positions (3^i mod 31).
pub const WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// Why a code is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditCodeError {
    /// Not 18 characters.
    #[error("a unified social credit code has 18 characters, this one has {0}")]
    Length(usize),
    /// A character outside the alphabet, or a letter where a digit is required.
    #[error(
        "character {position} ({found:?}) is not allowed there: codes use digits and the capital letters A-H, J-N, P, Q, R, T, U, W, X, Y, and positions 3 to 8 are digits"
    )]
    Character { position: usize, found: char },
    /// The 18th character does not match the first 17.
    #[error(
        "check character is {found:?} but the first 17 characters give {expected:?}: the code has a typo"
    )]
    Check { expected: char, found: char },
}

fn value(c: char) -> Option<u32> {
    ALPHABET.find(c).map(|i| i as u32)
}

/// The check character for the first 17 characters of a code, or `None` if
/// one of them is not in the alphabet.
pub fn check_character(first17: &str) -> Option<char> {
    let chars: Vec<char> = first17.chars().collect();
    if chars.len() != WEIGHTS.len() {
        return None;
    }
    let sum = chars
        .iter()
        .zip(WEIGHTS)
        .map(|(&c, w)| value(c).map(|v| v * w))
        .sum::<Option<u32>>()?;
    let check = (31 - sum % 31) % 31;
    ALPHABET.chars().nth(check as usize)
}

/// Validate a code: length, alphabet, digits in the division code, and the
/// check character.
pub fn validate(code: &str) -> Result<(), CreditCodeError> {
    let chars: Vec<char> = code.chars().collect();
    if chars.len() != 18 {
        return Err(CreditCodeError::Length(chars.len()));
    }
    for (i, &c) in chars.iter().enumerate() {
        let must_be_digit = (2..8).contains(&i);
        let ok = if must_be_digit {
            c.is_ascii_digit()
        } else {
            value(c).is_some()
        };
        if !ok {
            return Err(CreditCodeError::Character {
                position: i + 1,
                found: c,
            });
        }
    }
    let first17: String = chars[..17].iter().collect();
    let found = chars[17];
    match check_character(&first17) {
        Some(expected) if expected == found => Ok(()),
        Some(expected) => Err(CreditCodeError::Check { expected, found }),
        // Unreachable: every character was checked against the alphabet above.
        None => Err(CreditCodeError::Character {
            position: 1,
            found: chars[0],
        }),
    }
}

/// The same check as a CEL expression on a string `self`, for the CRD, so the
/// API server refuses a mistyped code at once. It passes strings that do not
/// match the code pattern; the schema `pattern` reports those.
pub fn cel_rule() -> String {
    static RULE: LazyLock<String> = LazyLock::new(|| {
        let sum = WEIGHTS
            .iter()
            .enumerate()
            .map(|(i, w)| format!("'{ALPHABET}'.indexOf(self.charAt({i})) * {w}"))
            .collect::<Vec<_>>()
            .join(" + ");
        format!(
            "!self.matches('^[0-9A-HJ-NPQRTUWXY]{{2}}[0-9]{{6}}[0-9A-HJ-NPQRTUWXY]{{10}}$') || \
             (31 - ({sum}) % 31) % 31 == '{ALPHABET}'.indexOf(self.charAt(17))"
        )
    });
    RULE.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codes checked by hand with the GB 32100-2015 algorithm.
    const VALID: [&str; 7] = [
        "91350100M000100Y43",
        "91110000600037341L",
        "91110108551385082Q",
        "914403001922038216",
        "91310000MA1FL0QX8M",
        "91110000802100433B",
        "11100000000013127D",
    ];

    #[test]
    fn known_valid_codes_pass() {
        for code in VALID {
            assert_eq!(validate(code), Ok(()), "{code}");
        }
    }

    #[test]
    fn check_character_of_known_codes() {
        assert_eq!(check_character("91350100M000100Y4"), Some('3'));
        assert_eq!(check_character("91110000600037341"), Some('L'));
        // A sum that is a multiple of 31 gives 0, not 31.
        assert_eq!(check_character("00000000000000000"), Some('0'));
        assert_eq!(check_character("0000000000000000"), None, "too short");
        assert_eq!(
            check_character("0000000000000000I"),
            None,
            "not in the alphabet"
        );
    }

    #[test]
    fn a_wrong_check_character_is_rejected() {
        assert_eq!(
            validate("911100007109252410"),
            Err(CreditCodeError::Check {
                expected: 'D',
                found: '0'
            })
        );
        assert_eq!(
            validate("91330000712560624K"),
            Err(CreditCodeError::Check {
                expected: 'X',
                found: 'K'
            })
        );
    }

    #[test]
    fn a_single_changed_character_is_caught() {
        for code in VALID {
            for i in 0..17 {
                let mut chars: Vec<char> = code.chars().collect();
                let original = chars[i];
                let replacement = if original == '1' { '2' } else { '1' };
                chars[i] = replacement;
                let typo: String = chars.iter().collect();
                assert!(validate(&typo).is_err(), "{typo} (from {code}) must fail");
            }
        }
    }

    #[test]
    fn wrong_length_and_characters_are_rejected() {
        assert_eq!(validate("9135010"), Err(CreditCodeError::Length(7)));
        assert_eq!(
            validate("91350100I000100Y43"),
            Err(CreditCodeError::Character {
                position: 9,
                found: 'I'
            })
        );
        assert_eq!(
            validate("9135A100M000100Y43"),
            Err(CreditCodeError::Character {
                position: 5,
                found: 'A'
            })
        );
        assert!(
            validate("91350100m000100y43").is_err(),
            "lower case is not allowed"
        );
    }

    #[test]
    fn cel_rule_names_every_position() {
        let rule = cel_rule();
        for i in 0..=17 {
            assert!(rule.contains(&format!("self.charAt({i})")), "position {i}");
        }
    }
}
