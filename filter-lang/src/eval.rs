//! The CESQL evaluator. (To be written; LIKE pattern compilation and matching live in [`like`].)

pub(crate) mod like;

use crate::Evaluation;
use crate::ast::Node;
use crate::event::Event;

pub(crate) fn evaluate(_node: &Node, _event: &Event) -> Evaluation {
    todo!("evaluator")
}

pub(crate) fn matches(_node: &Node, _event: &Event) -> bool {
    todo!("evaluator")
}
