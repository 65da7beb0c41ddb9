//! The CESQL lexer: turns source text into tokens, one at a time.
//!
//! The lexer is lazy (the parser pulls tokens as it needs them) so that errors are reported in
//! source order: in `) 'abc` the stray `)` is reported, not the unterminated string after it.
//! It is `Clone`, and cloning is how the parser looks more than one token ahead.
//!
//! Words (`[A-Za-z0-9_]+`) are one token kind: whether a word is a keyword, an identifier, a
//! function name or an integer literal is the parser's business, since it depends on position
//! (`abs` is an attribute, `abs(` a call) and on letter case rules that keywords share.

use crate::error::ParseError;

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `,`
    Comma,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `/`
    Slash,
    /// `%`
    Percent,
    /// `=`
    Eq,
    /// `!=` or `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// A string literal, unescaped.
    Str(String),
    /// A run of ASCII letters, digits and underscores: a keyword, identifier, function name or
    /// (all digits) an unsigned integer literal. Its text is the token's span.
    Word,
    /// The end of the input.
    Eof,
}

/// A token and where it is: `src[start..end]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// A cursor over the source text.
#[derive(Debug, Clone)]
pub(crate) struct Lexer<'s> {
    src: &'s str,
    /// Byte offset of the next unread character; always on a character boundary.
    pos: usize,
}

impl<'s> Lexer<'s> {
    pub(crate) fn new(src: &'s str) -> Self {
        Self { src, pos: 0 }
    }

    /// Reads the next token, skipping (Unicode) whitespace before it.
    pub(crate) fn next_token(&mut self) -> Result<Token, ParseError> {
        let rest = &self.src[self.pos..];
        let trimmed = rest.trim_start();
        self.pos += rest.len() - trimmed.len();
        let start = self.pos;
        let Some(c) = trimmed.chars().next() else {
            return Ok(Token {
                tok: Tok::Eof,
                start,
                end: start,
            });
        };
        let next = trimmed[c.len_utf8()..].chars().next();
        let (tok, len) = match c {
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            ',' => (Tok::Comma, 1),
            '+' => (Tok::Plus, 1),
            '-' => (Tok::Minus, 1),
            '*' => (Tok::Star, 1),
            '/' => (Tok::Slash, 1),
            '%' => (Tok::Percent, 1),
            '=' => (Tok::Eq, 1),
            '!' if next == Some('=') => (Tok::Ne, 2),
            '<' if next == Some('>') => (Tok::Ne, 2),
            '<' if next == Some('=') => (Tok::Le, 2),
            '<' => (Tok::Lt, 1),
            '>' if next == Some('=') => (Tok::Ge, 2),
            '>' => (Tok::Gt, 1),
            '\'' | '"' => return self.string(c),
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let len = trimmed
                    .bytes()
                    .position(|b| !(b.is_ascii_alphanumeric() || b == b'_'))
                    .unwrap_or(trimmed.len());
                (Tok::Word, len)
            }
            c => {
                return Err(ParseError::at(
                    self.src,
                    start,
                    format!("unexpected character {c:?}"),
                ));
            }
        };
        self.pos += len;
        Ok(Token {
            tok,
            start,
            end: self.pos,
        })
    }

    /// Reads a string literal opened by `quote` at the current position.
    ///
    /// A backslash followed by the delimiting quote stands for that quote; every other backslash
    /// is kept as it is (so `'ab\c'` is the four characters `ab\c`, which LIKE patterns rely on).
    fn string(&mut self, quote: char) -> Result<Token, ParseError> {
        let start = self.pos;
        let body = &self.src[start + 1..];
        let mut value = String::new();
        let mut chars = body.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                self.pos = start + 1 + i + 1;
                return Ok(Token {
                    tok: Tok::Str(value),
                    start,
                    end: self.pos,
                });
            }
            if c == '\\' && chars.peek().is_some_and(|&(_, n)| n == quote) {
                chars.next();
                value.push(quote);
            } else {
                value.push(c);
            }
        }
        Err(ParseError::at(
            self.src,
            start,
            "unterminated string literal",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(src: &str) -> Vec<Tok> {
        let mut lexer = Lexer::new(src);
        let mut out = Vec::new();
        loop {
            let t = lexer.next_token().unwrap();
            if t.tok == Tok::Eof {
                return out;
            }
            out.push(t.tok);
        }
    }

    #[test]
    fn operators_and_words() {
        assert_eq!(
            toks("a<>b != c<=d>=e<f>g=h+-*/%(,)"),
            [
                Tok::Word,
                Tok::Ne,
                Tok::Word,
                Tok::Ne,
                Tok::Word,
                Tok::Le,
                Tok::Word,
                Tok::Ge,
                Tok::Word,
                Tok::Lt,
                Tok::Word,
                Tok::Gt,
                Tok::Word,
                Tok::Eq,
                Tok::Word,
                Tok::Plus,
                Tok::Minus,
                Tok::Star,
                Tok::Slash,
                Tok::Percent,
                Tok::LParen,
                Tok::Comma,
                Tok::RParen,
            ]
        );
    }

    #[test]
    fn strings_unescape_only_their_own_quote() {
        assert_eq!(toks(r#"'a"b\'c'"#), [Tok::Str(r#"a"b'c"#.into())]);
        assert_eq!(toks(r#""a'b\"c""#), [Tok::Str(r#"a'b"c"#.into())]);
        assert_eq!(toks(r"'ab\c'"), [Tok::Str(r"ab\c".into())]);
        assert_eq!(toks(r#"'a\"'"#), [Tok::Str(r#"a\""#.into())]);
        assert_eq!(toks("'é'"), [Tok::Str("é".into())]);
    }

    #[test]
    fn spans_are_byte_offsets() {
        let mut lexer = Lexer::new("  é = 'x'");
        // 'é' is not a word character.
        let err = lexer.next_token().unwrap_err();
        assert_eq!((err.offset, err.column), (2, 3));
        let mut lexer = Lexer::new("ab  'x'");
        let a = lexer.next_token().unwrap();
        let s = lexer.next_token().unwrap();
        assert_eq!((a.start, a.end, s.start, s.end), (0, 2, 4, 7));
    }

    #[test]
    fn unterminated_string_is_reported_at_its_start() {
        let mut lexer = Lexer::new("x = 'abc");
        lexer.next_token().unwrap();
        lexer.next_token().unwrap();
        let err = lexer.next_token().unwrap_err();
        assert_eq!(err.offset, 4);
        assert!(err.message.contains("unterminated"), "{}", err.message);
        // An escaped closing quote does not close the string.
        assert!(Lexer::new(r"'abc\'").next_token().is_err());
        assert!(Lexer::new("!").next_token().is_err());
    }
}
