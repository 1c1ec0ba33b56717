//! Building [`Status`] replies: the protocol reports errors in a `Status`
//! inside the response, with a code from [`Code`] and a message for people.

use crate::v2::{Code, Status};

/// A status with `code` and a message a person can act on.
pub fn new(code: Code, message: impl Into<String>) -> Status {
    Status { code: code as i32, message: message.into() }
}

/// The OK status.
pub fn ok() -> Status {
    new(Code::Ok, "OK")
}

/// Whether a status (as received) is OK.
pub fn is_ok(status: Option<&Status>) -> bool {
    status.is_some_and(|s| s.code == Code::Ok as i32)
}

/// The code of a status, or `None` for a value this version does not know.
pub fn code(status: &Status) -> Option<Code> {
    Code::try_from(status.code).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_codes_and_messages() {
        let s = new(Code::TopicNotFound, "topic 'x' does not exist");
        assert_eq!(s.code, 40402);
        assert_eq!(code(&s), Some(Code::TopicNotFound));
        assert!(!is_ok(Some(&s)));
        assert!(is_ok(Some(&ok())));
        assert!(!is_ok(None));
        assert_eq!(code(&Status { code: 12345, message: String::new() }), None);
    }
}
