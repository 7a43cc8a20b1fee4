//! Checks of every response body, cheap enough for the hot path: one borrowed serde parse that
//! validates the whole JSON document but keeps only the fields compared, no allocation beyond
//! the body itself.

use serde::Deserialize;

use crate::failure::Mismatch;

#[derive(Deserialize)]
struct ResultProbe {
    student_id: u32,
}

#[derive(Deserialize)]
struct ErrorProbe<'a> {
    #[serde(borrow)]
    error: ErrorInner<'a>,
}

#[derive(Deserialize)]
struct ErrorInner<'a> {
    status: u16,
    code: &'a str,
}

/// Checks that `body` is a JSON result of student `id`.
///
/// # Errors
/// [`Mismatch::NotAResult`] for anything but a JSON object with a numeric `student_id`,
/// [`Mismatch::WrongStudent`] when it names another student.
pub fn check_result(body: &[u8], id: u32) -> Result<(), Mismatch> {
    match serde_json::from_slice::<ResultProbe>(body) {
        Ok(probe) if probe.student_id == id => Ok(()),
        Ok(_) => Err(Mismatch::WrongStudent),
        Err(_) => Err(Mismatch::NotAResult),
    }
}

/// Checks that `body` is the API's error envelope with `status` and `code`.
///
/// # Errors
/// [`Mismatch::WrongErrorBody`] otherwise.
pub fn check_error(body: &[u8], status: u16, code: &str) -> Result<(), Mismatch> {
    match serde_json::from_slice::<ErrorProbe<'_>>(body) {
        Ok(probe) if probe.error.status == status && probe.error.code == code => Ok(()),
        _ => Err(Mismatch::WrongErrorBody),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_of_the_requested_student_passes() {
        let body = br#"{"student_id":1000042,"name":"A \"B\" C","subjects":[{"subject":"x","score":1}]}"#;
        assert_eq!(check_result(body, 1_000_042), Ok(()));
    }

    #[test]
    fn another_student_or_a_broken_body_fails() {
        assert_eq!(check_result(br#"{"student_id":1000043}"#, 1_000_042), Err(Mismatch::WrongStudent));
        assert_eq!(check_result(br#"{"student_id":1000042"#, 1_000_042), Err(Mismatch::NotAResult));
        assert_eq!(check_result(br#"{"name":"x"}"#, 1_000_042), Err(Mismatch::NotAResult));
        assert_eq!(check_result(b"<html>1000042</html>", 1_000_042), Err(Mismatch::NotAResult));
        assert_eq!(check_result(br#"{"student_id":"1000042"}"#, 1_000_042), Err(Mismatch::NotAResult));
    }

    #[test]
    fn error_envelopes_are_checked_for_status_and_code() {
        let body = br#"{"error":{"status":404,"code":"unknown_id","message":"no such student"}}"#;
        assert_eq!(check_error(body, 404, "unknown_id"), Ok(()));
        assert_eq!(check_error(body, 400, "invalid_id"), Err(Mismatch::WrongErrorBody));
        assert_eq!(check_error(b"not found", 404, "unknown_id"), Err(Mismatch::WrongErrorBody));
    }
}
