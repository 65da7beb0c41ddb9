//! A broker's refusal as the CLI says it: one sentence and the error code, once.
//!
//! The SDK's [`Error`] already says what the broker said (`request failed (queue_exists):
//! queue "orders" exists …`); wrapping it in a context of our own (`queue "orders" exists
//! already: request failed (queue_exists): queue "orders" exists …`) says it twice. A
//! [`Refusal`] replaces the two with one line: the CLI's plain sentence for the case, if it
//! has one, else the broker's own message, then the code: `queue "orders" exists already with
//! another filter or options (queue_exists)`. It does not chain the SDK error, so `{:#}`
//! prints the line alone.

use std::fmt;

use crate::{Error, ErrorCode};

/// A broker's refusal of a request, said once. See the module docs.
#[derive(Debug)]
pub(super) struct Refusal {
    sentence: String,
    error: Error,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.error.code() {
            Some(code) => write!(f, "{} ({code})", self.sentence),
            None => f.write_str(&self.sentence),
        }
    }
}

impl std::error::Error for Refusal {}

/// `e` as the CLI reports it: a refusal by the broker (an error with the broker's code and
/// message) becomes one line, `sentence` (or, if `sentence` gives none for its code, the
/// broker's message) and the code; any other error is left as it is.
pub(super) fn said_once(
    e: Error,
    sentence: impl FnOnce(ErrorCode) -> Option<String>,
) -> anyhow::Error {
    let message = match &e {
        Error::Request { message, .. }
        | Error::Refused { message, .. }
        | Error::Publish { message, .. } => message.clone(),
        _ => return e.into(),
    };
    let sentence = e.code().and_then(sentence).unwrap_or(message);
    Refusal { sentence, error: e }.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exists() -> Error {
        Error::Request {
            code: ErrorCode::QueueExists,
            message: "queue \"orders\" exists with another filter or options".into(),
        }
    }

    #[test]
    fn a_refusal_is_said_once_with_its_code() {
        let e = said_once(exists(), |_| Some("queue \"orders\" exists already".into()));
        assert_eq!(
            format!("{e:#}"),
            "queue \"orders\" exists already (queue_exists)"
        );
        let e = said_once(exists(), |_| None);
        assert_eq!(
            format!("{e:#}"),
            "queue \"orders\" exists with another filter or options (queue_exists)"
        );
    }

    #[test]
    fn other_errors_are_left_as_they_are() {
        let e = said_once(Error::Timeout("waiting"), |_| Some("never".into()));
        assert_eq!(format!("{e:#}"), "timed out waiting");
    }
}
