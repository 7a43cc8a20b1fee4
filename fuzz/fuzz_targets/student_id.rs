//! Registration numbers arrive as untrusted text (the URL path). Parsing never panics; whatever
//! it accepts lies in `MIN..=MAX` and formats back to exactly the text given; it accepts every
//! number of one to `MAX_DIGITS` digits without a leading zero; and each refusal names the right
//! reason.
//!
//! Input: the bytes as text (non-UTF-8 inputs are skipped: the router never passes them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use results_core::{IdError, StudentId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = StudentId::parse(text);
    assert_eq!(text.parse::<StudentId>(), parsed, "FromStr agrees with parse");
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match parsed {
        Ok(id) => {
            assert!((StudentId::MIN..=StudentId::MAX).contains(&id.get()));
            assert_eq!(id.to_string(), text);
            assert_eq!(StudentId::new(id.get()), Ok(id));
        }
        Err(IdError::Empty) => assert!(text.is_empty()),
        Err(IdError::TooLong) => assert!(text.len() > StudentId::MAX_DIGITS),
        Err(IdError::NotANumber) => assert!(!digits && !text.is_empty()),
        Err(IdError::LeadingZero) => assert!(digits && text.starts_with('0')),
        Err(IdError::OutOfRange) => panic!("{text:?}: nine digits without a leading zero are always in range"),
    }
    // Any number's decimal form parses exactly when the number is in the range.
    if let Some(bytes) = data.get(..4) {
        let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let parsed = StudentId::parse(&n.to_string()).map(StudentId::get);
        match n {
            0 => assert_eq!(parsed, Err(IdError::LeadingZero)),
            n if n > StudentId::MAX => assert_eq!(parsed, Err(IdError::TooLong)),
            n => assert_eq!(parsed, Ok(n)),
        }
    }
});
