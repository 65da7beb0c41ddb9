//! CESQL built-in functions. (To be written.)

use crate::ast::Node;
use crate::error::FilterError;

/// Checks that every call in the tree names a built-in function with a matching arity.
pub(crate) fn check_calls(_node: &Node) -> Result<(), FilterError> {
    Ok(())
}
