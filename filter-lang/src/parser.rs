//! Lexer and recursive-descent parser for CESQL v1. (To be written.)

use crate::Limits;
use crate::ast::Node;
use crate::error::ParseError;

pub(crate) fn parse(src: &str, _limits: &Limits) -> Result<Node, ParseError> {
    Err(ParseError::at(src, 0, "parser not written yet"))
}
