//! Permission queries, as Unkey's `keys.verifyKey` takes them: permissions joined by `AND` and
//! `OR`, grouped by parentheses (`(orders:read OR orders:write) AND users:view`). `AND` binds
//! tighter than `OR`; the operators are case-insensitive.

use super::ScopeSet;

/// The longest query read: a query is part of a request body of at most 64 KiB anyway.
pub const MAX_LEN: usize = 1_000;
/// The deepest nesting of parentheses.
pub const MAX_DEPTH: usize = 16;

/// Why a query is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("is empty")]
    Empty,
    #[error("is longer than 1000 characters")]
    TooLong,
    #[error("nests parentheses deeper than 16")]
    TooDeep,
    #[error("has an unexpected character at position {0}")]
    BadChar(usize),
    #[error("expects a permission at position {0}")]
    ExpectedPermission(usize),
    #[error("expects AND, OR or ')' at position {0}")]
    ExpectedOperator(usize),
    #[error("has an unclosed '('")]
    Unclosed,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeQuery {
    Permission(String),
    And(Vec<ScopeQuery>),
    Or(Vec<ScopeQuery>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    And,
    Or,
    Open,
    Close,
}

fn permission_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '*')
}

fn tokenize(s: &str) -> Result<Vec<(usize, Token)>, QueryError> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '(' || c == ')' {
            chars.next();
            out.push((i, if c == '(' { Token::Open } else { Token::Close }));
        } else if permission_char(c) {
            let mut word = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if !permission_char(c) {
                    break;
                }
                word.push(c);
                chars.next();
            }
            let token = if word.eq_ignore_ascii_case("and") {
                Token::And
            } else if word.eq_ignore_ascii_case("or") {
                Token::Or
            } else {
                Token::Word(word)
            };
            out.push((i, token));
        } else {
            return Err(QueryError::BadChar(i));
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    end: usize,
}

impl Parser {
    fn position(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(i, _)| *i)
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn or(&mut self, depth: usize) -> Result<ScopeQuery, QueryError> {
        let mut parts = vec![self.and(depth)?];
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            parts.push(self.and(depth)?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { ScopeQuery::Or(parts) })
    }

    fn and(&mut self, depth: usize) -> Result<ScopeQuery, QueryError> {
        let mut parts = vec![self.atom(depth)?];
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            parts.push(self.atom(depth)?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { ScopeQuery::And(parts) })
    }

    fn atom(&mut self, depth: usize) -> Result<ScopeQuery, QueryError> {
        let position = self.position();
        match self.tokens.get(self.at).map(|(_, t)| t.clone()) {
            Some(Token::Word(w)) => {
                self.at += 1;
                Ok(ScopeQuery::Permission(w))
            }
            Some(Token::Open) => {
                if depth >= MAX_DEPTH {
                    return Err(QueryError::TooDeep);
                }
                self.at += 1;
                let inner = self.or(depth + 1)?;
                match self.peek() {
                    Some(Token::Close) => {
                        self.at += 1;
                        Ok(inner)
                    }
                    None => Err(QueryError::Unclosed),
                    Some(_) => Err(QueryError::ExpectedOperator(self.position())),
                }
            }
            _ => Err(QueryError::ExpectedPermission(position)),
        }
    }
}

impl ScopeQuery {
    /// # Errors
    /// When the text is empty, too long or too deep, or not a query.
    pub fn parse(s: &str) -> Result<Self, QueryError> {
        if s.len() > MAX_LEN {
            return Err(QueryError::TooLong);
        }
        let tokens = tokenize(s)?;
        if tokens.is_empty() {
            return Err(QueryError::Empty);
        }
        let mut p = Parser { tokens, at: 0, end: s.len() };
        let q = p.or(0)?;
        if p.at < p.tokens.len() {
            return Err(QueryError::ExpectedOperator(p.position()));
        }
        Ok(q)
    }

    /// Do these granted scopes satisfy the query? A permission is granted as a requested scope
    /// is (`orders:*` and `*` grant by wildcard).
    #[must_use]
    pub fn granted_by(&self, scopes: &ScopeSet) -> bool {
        match self {
            Self::Permission(p) => scopes.grants(p),
            Self::And(parts) => parts.iter().all(|q| q.granted_by(scopes)),
            Self::Or(parts) => parts.iter().any(|q| q.granted_by(scopes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> ScopeSet {
        ScopeSet::from_stored(&items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn precedence_and_parentheses() {
        let q = ScopeQuery::parse("a:r OR b:r AND c:r").expect("parses");
        assert_eq!(
            q,
            ScopeQuery::Or(vec![
                ScopeQuery::Permission("a:r".into()),
                ScopeQuery::And(vec![ScopeQuery::Permission("b:r".into()), ScopeQuery::Permission("c:r".into())]),
            ])
        );
        let q = ScopeQuery::parse("(a:r or b:r) and c:r").expect("parses");
        assert!(q.granted_by(&set(&["b:r", "c:r"])));
        assert!(!q.granted_by(&set(&["b:r"])));
        assert!(!q.granted_by(&set(&["c:r"])));
    }

    #[test]
    fn wildcards_grant() {
        let q = ScopeQuery::parse("orders:read AND users:view").expect("parses");
        assert!(q.granted_by(&set(&["orders:*", "users:view"])));
        assert!(q.granted_by(&set(&["*"])));
        assert!(!q.granted_by(&set(&["orders:*"])));
    }

    #[test]
    fn refusals() {
        assert_eq!(ScopeQuery::parse("  "), Err(QueryError::Empty));
        assert_eq!(ScopeQuery::parse("a:r AND"), Err(QueryError::ExpectedPermission(7)));
        assert_eq!(ScopeQuery::parse("(a:r"), Err(QueryError::Unclosed));
        assert_eq!(ScopeQuery::parse("a:r b:r"), Err(QueryError::ExpectedOperator(4)));
        assert_eq!(ScopeQuery::parse("a:r )"), Err(QueryError::ExpectedOperator(4)));
        assert_eq!(ScopeQuery::parse("a:r & b:r"), Err(QueryError::BadChar(4)));
        assert_eq!(ScopeQuery::parse(&"(".repeat(17)), Err(QueryError::TooDeep));
        assert_eq!(ScopeQuery::parse(&"a".repeat(1001)), Err(QueryError::TooLong));
        assert_eq!(ScopeQuery::parse("OR"), Err(QueryError::ExpectedPermission(0)));
    }
}
