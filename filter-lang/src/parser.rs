//! The CESQL v1 parser: a precedence-climbing (Pratt) parser over the tokens of [`lexer`].
//!
//! # Grammar and precedence
//!
//! Precedence follows CESQL §3.6 and the reference ANTLR grammar, from tightest to loosest:
//!
//! | level | operators | shape |
//! |---|---|---|
//! | 7 | `NOT x`, `-x` | prefix; binds tighter than every binary operator, so `NOT a = b` is `(NOT a) = b` |
//! | 6 | `x [NOT] LIKE 'pattern'` | postfix; the pattern must be a string literal |
//! | – | `EXISTS name` | prefix on an identifier only, so its level never matters |
//! | 5 | `x [NOT] IN (y, ...)` | postfix |
//! | 4 | `*` `/` `%` | binary, left-associative |
//! | 3 | `+` `-` | binary, left-associative |
//! | 2 | `=` `!=` `<>` `<` `<=` `>` `>=` | binary, left-associative |
//! | 1 | `AND` `OR` `XOR` | binary, **one shared level**, left-associative |
//!
//! Function calls, parenthesised sub-expressions, literals and identifiers are atoms. Keywords,
//! function names and identifiers are case-insensitive: identifiers are stored lowercased and
//! function names uppercased. A word directly followed by `(` is a function call.
//!
//! A `-` in prefix position immediately followed (no space) by an integer literal is part of the
//! literal, as in the grammar's `integer-literal ::= ('+' | '-')? digit+`; this is what lets
//! `-2147483648` be written. Elsewhere `-` is unary minus (`--10`) or subtraction (`4 - 1`).
//!
//! # Limits
//!
//! The parser is the gate for untrusted input, so it enforces [`Limits`] as it goes: the length
//! is checked before anything else, the `IN` list length as elements are read, and the nesting
//! depth on the height of every node it builds (which catches long left-associative chains such
//! as `1+1+1+...` that do not recurse). The evaluator and the other tree walks recurse along the
//! tree, so their depth is bounded by `max_depth`.
//!
//! Parentheses make no node, so they add no height; the parser's own recursion (through
//! parentheses, operands and arguments) is bounded separately at twice `max_depth`, whatever the
//! input. Twice is what the canonical text needs: it parenthesises every operation, and each
//! level of the tree then costs the parser at most two levels (a parenthesis and an operand), so
//! the canonical text of every expression the parser accepts parses back within the same limits.

mod lexer;
#[cfg(test)]
mod tests;

use crate::Limits;
use crate::ast::{BinaryOp, Node, UnaryOp};
use crate::error::ParseError;
use crate::eval::like;
use crate::value::{AttrName, MAX_ATTR_NAME_LEN, Value};
use lexer::{Lexer, Tok, Token};

/// Parses `src` into a syntax tree, within `limits`.
pub(crate) fn parse(src: &str, limits: &Limits) -> Result<Node, ParseError> {
    if src.len() > limits.max_len {
        return Err(ParseError::at(
            src,
            limits.max_len,
            format!(
                "expression is {} bytes long, more than max_len = {}",
                src.len(),
                limits.max_len
            ),
        ));
    }
    let mut parser = Parser::new(src, limits)?;
    let (node, _) = parser.expr(0, 1)?;
    if parser.peek.tok != Tok::Eof {
        return Err(parser.unexpected(&parser.peek));
    }
    Ok(node)
}

/// Binding powers (higher binds tighter); see the table in the module docs.
const LOGIC: u8 = 1;
const COMPARE: u8 = 2;
const ADD: u8 = 3;
const MUL: u8 = 4;
const IN: u8 = 5;
const LIKE: u8 = 6;
const PREFIX: u8 = 7;

/// A parsed sub-expression and its height (the syntax tree's; parentheses add none).
type Parsed = (Node, usize);

/// CESQL's keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    Not,
    And,
    Or,
    Xor,
    Like,
    In,
    Exists,
    True,
    False,
}

impl Keyword {
    fn of(word: &str) -> Option<Self> {
        const ALL: [(&str, Keyword); 9] = [
            ("NOT", Keyword::Not),
            ("AND", Keyword::And),
            ("OR", Keyword::Or),
            ("XOR", Keyword::Xor),
            ("LIKE", Keyword::Like),
            ("IN", Keyword::In),
            ("EXISTS", Keyword::Exists),
            ("TRUE", Keyword::True),
            ("FALSE", Keyword::False),
        ];
        ALL.iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(word))
            .map(|&(_, kw)| kw)
    }
}

/// What can follow a complete operand.
enum Infix {
    Binary(BinaryOp, u8),
    Like { negated: bool },
    In { negated: bool },
}

struct Parser<'s, 'l> {
    src: &'s str,
    lexer: Lexer<'s>,
    /// The next token, not yet consumed.
    peek: Token,
    limits: &'l Limits,
}

impl<'s, 'l> Parser<'s, 'l> {
    fn new(src: &'s str, limits: &'l Limits) -> Result<Self, ParseError> {
        let mut lexer = Lexer::new(src);
        let peek = lexer.next_token()?;
        Ok(Self {
            src,
            lexer,
            peek,
            limits,
        })
    }

    /// Consumes the next token and returns it.
    fn bump(&mut self) -> Result<Token, ParseError> {
        let next = self.lexer.next_token()?;
        Ok(std::mem::replace(&mut self.peek, next))
    }

    /// The token after the next one, without consuming anything.
    fn peek_second(&self) -> Result<Token, ParseError> {
        self.lexer.clone().next_token()
    }

    fn text(&self, token: &Token) -> &'s str {
        &self.src[token.start..token.end]
    }

    fn keyword(&self, token: &Token) -> Option<Keyword> {
        match token.tok {
            Tok::Word => Keyword::of(self.text(token)),
            _ => None,
        }
    }

    /// How a token reads in an error message.
    fn describe(&self, token: &Token) -> String {
        if token.tok == Tok::Eof {
            return "end of input".to_owned();
        }
        const MAX: usize = 40;
        let text = self.text(token);
        let shown = match text.char_indices().nth(MAX) {
            Some((i, _)) => format!("{}...", &text[..i]),
            None => text.to_owned(),
        };
        match token.tok {
            Tok::Str(_) => format!("string {shown}"),
            _ => format!("'{shown}'"),
        }
    }

    fn unexpected(&self, token: &Token) -> ParseError {
        let message = if token.tok == Tok::Eof {
            "unexpected end of input".to_owned()
        } else {
            format!("unexpected token {}", self.describe(token))
        };
        ParseError::at(self.src, token.start, message)
    }

    fn expected(&self, what: &str, token: &Token) -> ParseError {
        ParseError::at(
            self.src,
            token.start,
            format!("expected {what} but found {}", self.describe(token)),
        )
    }

    fn too_deep(&self, offset: usize) -> ParseError {
        ParseError::at(
            self.src,
            offset,
            format!(
                "expression is nested deeper than max_depth = {}",
                self.limits.max_depth
            ),
        )
    }

    /// Checks the height of a node about to be built at `offset`.
    fn height(&self, height: usize, offset: usize) -> Result<usize, ParseError> {
        if height > self.limits.max_depth {
            Err(self.too_deep(offset))
        } else {
            Ok(height)
        }
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<Token, ParseError> {
        if self.peek.tok == tok {
            self.bump()
        } else {
            Err(self.expected(what, &self.peek))
        }
    }

    /// Parses an expression whose operators all bind at least as tightly as `min_bp`. `level`
    /// is how deeply this expression is nested in the whole tree (1 for the root).
    fn expr(&mut self, min_bp: u8, level: usize) -> Result<Parsed, ParseError> {
        if level > self.limits.max_depth.saturating_mul(2) {
            return Err(self.too_deep(self.peek.start));
        }
        let (mut lhs, mut height) = self.prefix(level)?;
        while let Some(infix) = self.infix()? {
            let at = self.peek.start;
            match infix {
                Infix::Binary(op, bp) => {
                    if bp < min_bp {
                        break;
                    }
                    self.bump()?;
                    // Left-associative: the right operand only takes tighter operators.
                    let (rhs, rhs_height) = self.expr(bp + 1, level + 1)?;
                    height = self.height(1 + height.max(rhs_height), at)?;
                    lhs = Node::Binary {
                        op,
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    };
                }
                Infix::Like { negated } => {
                    if LIKE < min_bp {
                        break;
                    }
                    if negated {
                        self.bump()?;
                    }
                    self.bump()?;
                    let Tok::Str(pattern) = self.peek.tok.clone() else {
                        return Err(self.expected("a string literal as LIKE pattern", &self.peek));
                    };
                    self.bump()?;
                    height = self.height(height + 1, at)?;
                    lhs = Node::Like {
                        arg: Box::new(lhs),
                        pattern: Box::new(like::compile(pattern)),
                        negated,
                    };
                }
                Infix::In { negated } => {
                    if IN < min_bp {
                        break;
                    }
                    if negated {
                        self.bump()?;
                    }
                    self.bump()?;
                    let (set, set_height) = self.in_list(level)?;
                    height = self.height(1 + height.max(set_height), at)?;
                    lhs = Node::In {
                        arg: Box::new(lhs),
                        set,
                        negated,
                    };
                }
            }
        }
        Ok((lhs, height))
    }

    /// Classifies the next token as an infix or postfix operator, if it is one.
    fn infix(&self) -> Result<Option<Infix>, ParseError> {
        let op = |op, bp| Ok(Some(Infix::Binary(op, bp)));
        match self.peek.tok {
            Tok::Star => op(BinaryOp::Mul, MUL),
            Tok::Slash => op(BinaryOp::Div, MUL),
            Tok::Percent => op(BinaryOp::Mod, MUL),
            Tok::Plus => op(BinaryOp::Add, ADD),
            Tok::Minus => op(BinaryOp::Sub, ADD),
            Tok::Eq => op(BinaryOp::Eq, COMPARE),
            Tok::Ne => op(BinaryOp::Ne, COMPARE),
            Tok::Lt => op(BinaryOp::Lt, COMPARE),
            Tok::Le => op(BinaryOp::Le, COMPARE),
            Tok::Gt => op(BinaryOp::Gt, COMPARE),
            Tok::Ge => op(BinaryOp::Ge, COMPARE),
            _ => match self.keyword(&self.peek) {
                Some(Keyword::And) => op(BinaryOp::And, LOGIC),
                Some(Keyword::Or) => op(BinaryOp::Or, LOGIC),
                Some(Keyword::Xor) => op(BinaryOp::Xor, LOGIC),
                Some(Keyword::Like) => Ok(Some(Infix::Like { negated: false })),
                Some(Keyword::In) => Ok(Some(Infix::In { negated: false })),
                Some(Keyword::Not) => {
                    let second = self.peek_second()?;
                    match self.keyword(&second) {
                        Some(Keyword::Like) => Ok(Some(Infix::Like { negated: true })),
                        Some(Keyword::In) => Ok(Some(Infix::In { negated: true })),
                        _ => Err(self.expected("LIKE or IN after NOT", &second)),
                    }
                }
                _ => Ok(None),
            },
        }
    }

    /// Parses `( y1, y2, ... )` after `IN`.
    fn in_list(&mut self, level: usize) -> Result<(Vec<Node>, usize), ParseError> {
        self.expect(Tok::LParen, "'(' after IN")?;
        if self.peek.tok == Tok::RParen {
            return Err(ParseError::at(
                self.src,
                self.peek.start,
                "an IN list needs at least one element",
            ));
        }
        let mut set = Vec::new();
        let mut height = 0;
        loop {
            if set.len() == self.limits.max_in_list {
                return Err(ParseError::at(
                    self.src,
                    self.peek.start,
                    format!(
                        "IN list has more than max_in_list = {} elements",
                        self.limits.max_in_list
                    ),
                ));
            }
            let (element, element_height) = self.expr(0, level + 1)?;
            set.push(element);
            height = height.max(element_height);
            if self.peek.tok == Tok::Comma {
                self.bump()?;
            } else {
                self.expect(Tok::RParen, "',' or ')' in IN list")?;
                return Ok((set, height));
            }
        }
    }

    /// Parses an operand: an atom or a prefix operator applied to an operand.
    fn prefix(&mut self, level: usize) -> Result<Parsed, ParseError> {
        let token = self.bump()?;
        match &token.tok {
            Tok::LParen => {
                let parsed = self.expr(0, level + 1)?;
                self.expect(Tok::RParen, "')'")?;
                Ok(parsed)
            }
            Tok::Minus | Tok::Plus if self.is_adjacent_integer(&token) => {
                let digits = self.bump()?;
                let negative = token.tok == Tok::Minus;
                let literal = self.integer(token.start, &digits, negative)?;
                Ok((literal, 1))
            }
            Tok::Minus => self.unary(UnaryOp::Neg, &token, level),
            Tok::Str(s) => Ok((Node::Literal(Value::String(s.clone())), 1)),
            Tok::Word => self.word(token, level),
            Tok::Eof => Err(self.expected("an expression", &token)),
            _ => Err(self.unexpected(&token)),
        }
    }

    /// Whether the next token is an unsigned integer literal written right after `sign`.
    fn is_adjacent_integer(&self, sign: &Token) -> bool {
        self.peek.tok == Tok::Word
            && self.peek.start == sign.end
            && self.text(&self.peek).bytes().all(|b| b.is_ascii_digit())
    }

    fn unary(&mut self, op: UnaryOp, token: &Token, level: usize) -> Result<Parsed, ParseError> {
        let (arg, height) = self.expr(PREFIX, level + 1)?;
        let height = self.height(height + 1, token.start)?;
        Ok((
            Node::Unary {
                op,
                arg: Box::new(arg),
            },
            height,
        ))
    }

    /// An integer literal: `digits`, negated if `negative`, starting (sign included) at `start`.
    fn integer(&self, start: usize, digits: &Token, negative: bool) -> Result<Node, ParseError> {
        let text = self.text(digits);
        // Accumulate the magnitude in i64 (stopping once past any i32) and apply the sign last,
        // so that i32::MIN fits; no allocation on this per-literal path.
        let magnitude = text.bytes().try_fold(0i64, |acc, b| {
            let digit = b.checked_sub(b'0').filter(|d| *d < 10)?;
            let next = acc * 10 + i64::from(digit);
            (next <= 1 << 31).then_some(next)
        });
        magnitude
            .and_then(|m| i32::try_from(if negative { -m } else { m }).ok())
            .map(|i| Node::Literal(Value::Int(i)))
            .ok_or_else(|| {
                let source = &self.src[start..digits.end];
                let shown = if source.len() > 40 {
                    format!("{}...", &source[..40])
                } else {
                    source.to_owned()
                };
                ParseError::at(
                    self.src,
                    start,
                    format!("integer literal {shown} does not fit in 32 bits"),
                )
            })
    }

    /// A word in operand position: a literal, a prefix keyword, a call or an identifier.
    fn word(&mut self, token: Token, level: usize) -> Result<Parsed, ParseError> {
        let text = self.text(&token);
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return Ok((self.integer(token.start, &token, false)?, 1));
        }
        match Keyword::of(text) {
            Some(Keyword::True) => Ok((Node::Literal(Value::Bool(true)), 1)),
            Some(Keyword::False) => Ok((Node::Literal(Value::Bool(false)), 1)),
            Some(Keyword::Not) => self.unary(UnaryOp::Not, &token, level),
            Some(Keyword::Exists) => {
                let name = self.bump()?;
                if name.tok != Tok::Word || self.keyword(&name).is_some() {
                    return Err(self.expected("an attribute name after EXISTS", &name));
                }
                Ok((Node::Exists(self.identifier(&name)?), 1))
            }
            Some(_) => Err(self.unexpected(&token)),
            None if self.peek.tok == Tok::LParen => self.call(&token, level),
            None => Ok((Node::Attr(self.identifier(&token)?), 1)),
        }
    }

    fn identifier(&self, token: &Token) -> Result<AttrName, ParseError> {
        AttrName::new(self.text(token).to_ascii_lowercase()).map_err(|_| {
            ParseError::at(
                self.src,
                token.start,
                format!(
                    "invalid identifier {}: attribute names are 1 to {MAX_ATTR_NAME_LEN} \
                     letters and digits",
                    self.describe(token)
                ),
            )
        })
    }

    /// Parses `NAME(args...)`; the next token is the `(`.
    fn call(&mut self, name: &Token, level: usize) -> Result<Parsed, ParseError> {
        let text = self.text(name);
        let valid = text.starts_with(|c: char| c.is_ascii_alphabetic())
            && text.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_');
        if !valid {
            return Err(ParseError::at(
                self.src,
                name.start,
                format!(
                    "invalid function name {}: function names are letters and '_'",
                    self.describe(name)
                ),
            ));
        }
        let name_upper = text.to_ascii_uppercase();
        self.bump()?; // the '('
        let mut args = Vec::new();
        let mut height = 0;
        if self.peek.tok == Tok::RParen {
            self.bump()?;
        } else {
            loop {
                let (arg, arg_height) = self.expr(0, level + 1)?;
                args.push(arg);
                height = height.max(arg_height);
                if self.peek.tok == Tok::Comma {
                    self.bump()?;
                } else {
                    self.expect(Tok::RParen, "',' or ')' in argument list")?;
                    break;
                }
            }
        }
        let height = self.height(height + 1, name.start)?;
        Ok((
            Node::Call {
                name: name_upper,
                args,
            },
            height,
        ))
    }
}
