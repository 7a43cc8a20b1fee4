//! Registration numbers: what a well-formed one looks like, and strict parsing of IDs from
//! untrusted text.
//!
//! Nothing here fixes the range a data set uses: registration numbers are whatever the data holds
//! (an authority's file, or a generated data set laid out from its `--first-id`), and the data set
//! records its own range (see [`crate::marker`]). This module only fixes the shape every number
//! must have: a positive whole number of at most [`StudentId::MAX_DIGITS`] decimal digits, written
//! without a sign, spaces or leading zeros. The bound keeps every ID inside PostgreSQL's `integer`
//! column and the API's parser free of overflow; a well-formed number that no student holds is an
//! unknown ID (a 404), not a malformed one (a 400).

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
    /// Longer than any registration number can be; not echoed back.
    #[error("the registration number is too long (at most {} digits)", StudentId::MAX_DIGITS)]
    TooLong,
    /// Contains something other than the ASCII digits 0-9 (signs, spaces, letters, other scripts).
    #[error("the registration number must contain only the digits 0-9")]
    NotANumber,
    /// Zero, or a number written with leading zeros ("0123" would name the same student as "123").
    #[error("the registration number must not be zero or start with 0")]
    LeadingZero,
    /// A number outside `StudentId::MIN ..= StudentId::MAX`.
    #[error("the registration number must be between {} and {}", StudentId::MIN, StudentId::MAX)]
    OutOfRange,
}

impl StudentId {
    /// The smallest registration number: any positive whole number may be one.
    pub const MIN: u32 = 1;
    /// The longest registration number, in decimal digits (fits PostgreSQL's `integer`).
    pub const MAX_DIGITS: usize = 9;
    /// The largest registration number: [`StudentId::MAX_DIGITS`] nines.
    pub const MAX: u32 = 999_999_999;

    /// Checks that `value` is a possible registration number (`MIN ..= MAX`).
    pub fn new(value: u32) -> Result<Self, IdError> {
        if (Self::MIN..=Self::MAX).contains(&value) { Ok(Self(value)) } else { Err(IdError::OutOfRange) }
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Parses untrusted text strictly: ASCII digits only, no sign, no whitespace, no leading zero,
    /// at most [`StudentId::MAX_DIGITS`] digits.
    ///
    /// Work is bounded by the length check before anything else, so a hostile megabyte-long "ID"
    /// costs nothing.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        Self::parse_bytes(text.as_bytes())
    }

    /// [`StudentId::parse`] on bytes (a CSV field that may not even be UTF-8).
    pub fn parse_bytes(text: &[u8]) -> Result<Self, IdError> {
        if text.is_empty() {
            return Err(IdError::Empty);
        }
        if text.len() > Self::MAX_DIGITS {
            return Err(IdError::TooLong);
        }
        let mut value: u32 = 0;
        for &byte in text {
            if !byte.is_ascii_digit() {
                return Err(IdError::NotANumber);
            }
            // At most nine digits: no overflow in u32.
            value = value * 10 + u32::from(byte - b'0');
        }
        if text[0] == b'0' {
            return Err(IdError::LeadingZero);
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
    fn any_positive_number_up_to_nine_digits_is_well_formed() {
        for (text, value) in [("1", 1), ("10000", 10_000), ("674823", 674_823), ("1000000", 1_000_000)] {
            assert_eq!(StudentId::parse(text).map(StudentId::get), Ok(value), "{text}");
        }
        assert_eq!(StudentId::parse("999999999").map(StudentId::get), Ok(StudentId::MAX));
        assert_eq!(StudentId::parse("1000000000"), Err(IdError::TooLong));
        assert_eq!(StudentId::parse("0"), Err(IdError::LeadingZero));
        assert_eq!(StudentId::parse("0999999"), Err(IdError::LeadingZero));
        assert_eq!(StudentId::new(0), Err(IdError::OutOfRange));
        assert_eq!(StudentId::new(StudentId::MAX + 1), Err(IdError::OutOfRange));
        assert_eq!(StudentId::MAX.to_string().len(), StudentId::MAX_DIGITS);
        assert!(i32::try_from(StudentId::MAX).is_ok(), "fits PostgreSQL's integer");
    }

    #[test]
    fn refuses_anything_but_ascii_digits() {
        for bad in ["-1000000", "+1000000", " 1000000", "1000000 ", "10000a0", "١٢٣", "1e6", "0x10000"] {
            assert_eq!(StudentId::parse(bad), Err(IdError::NotANumber), "{bad:?}");
        }
        // Other scripts' digits take several bytes each: refused by length before any scan.
        assert_eq!(StudentId::parse("١٢٣٤٥٦٧"), Err(IdError::TooLong));
        assert_eq!(StudentId::parse(""), Err(IdError::Empty));
        assert_eq!(StudentId::parse(&"1".repeat(15)), Err(IdError::TooLong));
        assert_eq!(StudentId::parse_bytes(b"12\xff"), Err(IdError::NotANumber));
    }
}
