//! Registration numbers: the documented ID range and strict parsing of IDs from untrusted text.
//!
//! A registration number is a seven-digit decimal number from [`StudentId::MIN`] to
//! [`StudentId::MAX`]. The generator hands them out contiguously from [`StudentId::MIN`] (the
//! student at index `i` has ID `MIN + i`), so a data set of `n` students occupies
//! `MIN ..= MIN + n - 1` and every other number in the accepted range is a well-formed but
//! unknown ID (a 404, not a 400).

use std::fmt;

/// A syntactically valid registration number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StudentId(u32);

/// Why a piece of text is not a registration number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Nothing was given.
    #[error("the registration number is empty")]
    Empty,
    /// Longer than any registration number could be; not echoed back.
    #[error("the registration number is too long (it has {} digits)", StudentId::DIGITS)]
    TooLong,
    /// Contains something other than the ASCII digits 0-9 (signs, spaces, letters, other scripts).
    #[error("the registration number must contain only the digits 0-9")]
    NotANumber,
    /// A number, but outside the range registration numbers are issued in.
    #[error("the registration number must be between {} and {}", StudentId::MIN, StudentId::MAX)]
    OutOfRange,
}

impl StudentId {
    /// The lowest registration number ever issued; the first generated student has it.
    pub const MIN: u32 = 1_000_000;
    /// The highest registration number that can be issued (seven digits).
    pub const MAX: u32 = 9_999_999;
    /// Number of decimal digits in every registration number.
    pub const DIGITS: usize = 7;
    /// How many distinct registration numbers the range holds.
    pub const CAPACITY: u32 = Self::MAX - Self::MIN + 1;

    /// Checks that `value` lies in the issued range.
    pub fn new(value: u32) -> Result<Self, IdError> {
        if (Self::MIN..=Self::MAX).contains(&value) { Ok(Self(value)) } else { Err(IdError::OutOfRange) }
    }

    /// The ID of the student at `index` in a generated data set (`None` past the range).
    pub fn from_index(index: u32) -> Option<Self> {
        Self::MIN.checked_add(index).and_then(|v| Self::new(v).ok())
    }

    /// The position of this ID in a generated data set (`MIN` is index 0).
    pub fn index(self) -> u32 {
        self.0 - Self::MIN
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Parses untrusted text strictly: ASCII digits only, no sign, no whitespace, in range.
    ///
    /// Work is bounded by the input length check before anything else, so a hostile
    /// megabyte-long "ID" costs nothing.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        if text.is_empty() {
            return Err(IdError::Empty);
        }
        // Anything longer than the digit count plus a little slack for leading zeros is refused
        // without being scanned.
        if text.len() > 2 * Self::DIGITS {
            return Err(IdError::TooLong);
        }
        let mut value: u32 = 0;
        for byte in text.bytes() {
            if !byte.is_ascii_digit() {
                return Err(IdError::NotANumber);
            }
            // At most 14 digits: saturating keeps this total without overflow panics.
            value = value.saturating_mul(10).saturating_add(u32::from(byte - b'0'));
        }
        if text.len() != Self::DIGITS {
            return Err(IdError::OutOfRange);
        }
        Self::new(value)
    }
}

impl fmt::Display for StudentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for StudentId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_edge_of_the_range() {
        assert_eq!(StudentId::parse("1000000").map(StudentId::get), Ok(1_000_000));
        assert_eq!(StudentId::parse("9999999").map(StudentId::get), Ok(9_999_999));
        assert_eq!(StudentId::parse("0999999"), Err(IdError::OutOfRange));
        assert_eq!(StudentId::parse("10000000"), Err(IdError::OutOfRange));
        assert_eq!(StudentId::parse("999999"), Err(IdError::OutOfRange));
    }

    #[test]
    fn refuses_anything_but_ascii_digits() {
        for bad in ["-1000000", "+1000000", " 1000000", "1000000 ", "10000a0", "١٢٣٤٥٦٧", "1e6", "0x10000"] {
            assert_eq!(StudentId::parse(bad), Err(IdError::NotANumber), "{bad:?}");
        }
        assert_eq!(StudentId::parse(""), Err(IdError::Empty));
        assert_eq!(StudentId::parse(&"1".repeat(15)), Err(IdError::TooLong));
        assert_eq!(StudentId::parse(&"9".repeat(14)), Err(IdError::OutOfRange));
    }

    #[test]
    fn index_and_id_are_inverse() {
        let id = StudentId::from_index(674_822).expect("in range");
        assert_eq!(id.get(), 1_674_822);
        assert_eq!(id.index(), 674_822);
        assert_eq!(StudentId::from_index(StudentId::CAPACITY), None);
    }
}
