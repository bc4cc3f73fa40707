//! The `filter` and `order_by` strings of MLflow's search calls, parsed by
//! hand (a tokenizer and a few clauses; nothing is evaluated as code).
//!
//! A filter is one or more clauses joined by `AND` (`OR` and parentheses
//! around clauses are not supported). A clause is `field op value`:
//!
//! | field | ops | searched on |
//! |---|---|---|
//! | `name` | `=` `!=` `LIKE` `ILIKE` `IN` | models, versions |
//! | `tags.<key>` / `tag.<key>` | `=` `!=` `LIKE` `ILIKE` | models, versions |
//! | `run_id` | `=` `!=` `IN` | versions (always `''`: there are no runs) |
//! | `source_path` | `=` `!=` `LIKE` `ILIKE` | versions |
//! | `version_number` | `=` `!=` `<` `<=` `>` `>=` | versions |
//!
//! A tag key may be quoted with backticks or double quotes
//! (``tags.`mlflow.prompt.is_prompt` ``, which `MlflowClient` adds to every
//! model search). Strings are in single or double quotes; inside them a
//! backslash escapes the next character and a doubled quote stands for one.
//! `LIKE` patterns use `%` (any run of characters) and `_` (one character);
//! `ILIKE` ignores ASCII case. A tag clause with `!=` also matches an entity
//! without that tag, as MLflow's own stores do.

use std::cmp::Ordering;

/// Which search a filter belongs to: the fields differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `registered-models/search`.
    Models,
    /// `model-versions/search`.
    Versions,
}

impl Target {
    fn supported(self) -> &'static str {
        match self {
            Target::Models => {
                "supported: clauses joined by AND on name (=, !=, LIKE, ILIKE, IN) and \
                 tags.<key> (=, !=, LIKE, ILIKE), values in quotes"
            }
            Target::Versions => {
                "supported: clauses joined by AND on name (=, !=, LIKE, ILIKE, IN), \
                 tags.<key> (=, !=, LIKE, ILIKE), run_id (=, !=, IN), source_path \
                 (=, !=, LIKE, ILIKE) and version_number (=, !=, <, <=, >, >=)"
            }
        }
    }
}

/// A field a clause tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    /// The model's name.
    Name,
    /// A tag's value.
    Tag(String),
    /// The run a version came from (always empty here).
    RunId,
    /// The version's `source`.
    SourcePath,
    /// The version's number.
    VersionNumber,
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Like,
    ILike,
    In,
    Lt,
    Le,
    Gt,
    Ge,
}

/// What a clause compares with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    Text(String),
    Number(u64),
    List(Vec<String>),
}

/// One `field op value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Clause {
    pub(crate) field: Field,
    pub(crate) op: Op,
    pub(crate) value: Value,
}

/// What a clause is evaluated against: one model, or one version.
pub(crate) trait Subject {
    /// The model's name.
    fn name(&self) -> &str;
    /// A tag's value, if the tag is set.
    fn tag(&self, key: &str) -> Option<&str>;
    /// The version's source (models have none).
    fn source(&self) -> &str {
        ""
    }
    /// The version's number (models have none).
    fn version_number(&self) -> u64 {
        0
    }
}

/// A parsed filter: every clause must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    pub(crate) clauses: Vec<Clause>,
}

impl Filter {
    /// Parses `text` (empty: everything matches). The error says what is
    /// supported.
    pub(crate) fn parse(text: &str, target: Target) -> Result<Filter, String> {
        let tokens =
            tokenize(text).map_err(|e| format!("filter {text:?}: {e}; {}", target.supported()))?;
        let mut parser = Parser {
            tokens,
            at: 0,
            target,
        };
        let mut clauses = Vec::new();
        if !parser.tokens.is_empty() {
            loop {
                clauses.push(
                    parser
                        .clause()
                        .map_err(|e| format!("filter {text:?}: {e}; {}", target.supported()))?,
                );
                match parser.next() {
                    None => break,
                    Some(Token::Word(w)) if w.eq_ignore_ascii_case("and") => continue,
                    Some(t) => {
                        return Err(format!(
                            "filter {text:?}: expected AND or the end, found {}; {}",
                            t.describe(),
                            target.supported()
                        ));
                    }
                }
            }
        }
        Ok(Filter { clauses })
    }

    /// The model name every match must have, when a clause says `name = '…'`:
    /// a search can then read that one model only.
    pub(crate) fn exact_name(&self) -> Option<&str> {
        self.clauses
            .iter()
            .find_map(|c| match (&c.field, c.op, &c.value) {
                (Field::Name, Op::Eq, Value::Text(t)) => Some(t.as_str()),
                _ => None,
            })
    }

    /// Whether `subject` passes every clause.
    pub(crate) fn matches(&self, subject: &dyn Subject) -> bool {
        self.clauses.iter().all(|c| c.matches(subject))
    }
}

impl Clause {
    fn matches(&self, s: &dyn Subject) -> bool {
        let text = match &self.field {
            Field::Name => Some(s.name()),
            Field::Tag(key) => s.tag(key),
            Field::RunId => Some(""),
            Field::SourcePath => Some(s.source()),
            Field::VersionNumber => {
                let Value::Number(n) = self.value else {
                    return false;
                };
                let have = s.version_number();
                return match self.op {
                    Op::Eq => have == n,
                    Op::Ne => have != n,
                    Op::Lt => have < n,
                    Op::Le => have <= n,
                    Op::Gt => have > n,
                    Op::Ge => have >= n,
                    _ => false,
                };
            }
        };
        match (self.op, &self.value) {
            // An absent tag is "not equal" to anything, as in MLflow's stores.
            (Op::Ne, Value::Text(v)) => text != Some(v.as_str()),
            (_, _) if text.is_none() => false,
            (Op::Eq, Value::Text(v)) => text == Some(v.as_str()),
            (Op::Like, Value::Text(p)) => text.is_some_and(|t| like(t, p, false)),
            (Op::ILike, Value::Text(p)) => text.is_some_and(|t| like(t, p, true)),
            (Op::In, Value::List(vs)) => text.is_some_and(|t| vs.iter().any(|v| v == t)),
            _ => false,
        }
    }
}

/// SQL `LIKE`: `%` matches any run of characters, `_` exactly one; with
/// `fold`, ASCII letters match either case. Greedy with one backtrack point,
/// so linear in practice and never exponential.
pub(crate) fn like(text: &str, pattern: &str, fold: bool) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let same = |a: char, b: char| {
        if fold {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut ti, mut pi) = (0, 0);
    // The last `%` seen and the text position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '%' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '_' || same(p[pi], t[ti])) {
            ti += 1;
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '%')
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// A bare word: a field, a keyword, a number.
    Word(String),
    /// A quoted string.
    Text(String),
    /// A backtick-quoted identifier.
    Ident(String),
    Op(&'static str),
    Open,
    Close,
    Comma,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("{w:?}"),
            Token::Text(t) => format!("the string {t:?}"),
            Token::Ident(i) => format!("`{i}`"),
            Token::Op(o) => format!("'{o}'"),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::Comma => "','".into(),
        }
    }
}

/// Filters longer than this are refused (they are typed by people or built
/// from a few names; this bounds the work a request can cause).
const MAX_FILTER_CHARS: usize = 16 * 1024;

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    if text.len() > MAX_FILTER_CHARS {
        return Err(format!("longer than {MAX_FILTER_CHARS} bytes"));
    }
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(_, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '\'' | '"' | '`' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("a {c} quote is not closed")),
                        Some((_, '\\')) => match chars.next() {
                            Some((_, e)) => s.push(e),
                            None => return Err("the text ends with a backslash".into()),
                        },
                        Some((_, q)) if q == c => {
                            // A doubled quote stands for one.
                            if chars.peek().map(|&(_, n)| n) == Some(c) {
                                chars.next();
                                s.push(c);
                            } else {
                                break;
                            }
                        }
                        Some((_, other)) => s.push(other),
                    }
                }
                out.push(if c == '`' {
                    Token::Ident(s)
                } else {
                    Token::Text(s)
                });
            }
            '(' | ')' | ',' => {
                chars.next();
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
            }
            '=' | '!' | '<' | '>' => {
                chars.next();
                let next = chars.peek().map(|&(_, n)| n);
                let op = match (c, next) {
                    ('=', Some('=')) => {
                        chars.next();
                        "="
                    }
                    ('=', _) => "=",
                    ('!', Some('=')) => {
                        chars.next();
                        "!="
                    }
                    ('<', Some('>')) => {
                        chars.next();
                        "!="
                    }
                    ('<', Some('=')) => {
                        chars.next();
                        "<="
                    }
                    ('>', Some('=')) => {
                        chars.next();
                        ">="
                    }
                    ('<', _) => "<",
                    ('>', _) => ">",
                    _ => return Err(format!("unexpected {c:?}")),
                };
                out.push(Token::Op(op));
            }
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') => {
                let mut w = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                        w.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Word(w));
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    target: Target,
}

impl Parser {
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn field(&mut self) -> Result<Field, String> {
        let word = match self.next() {
            Some(Token::Word(w)) => w,
            Some(t) => return Err(format!("expected a field, found {}", t.describe())),
            None => return Err("expected a field, found the end".into()),
        };
        let lower = word.to_ascii_lowercase();
        for prefix in ["tags.", "tag."] {
            if let Some(key) = lower.strip_prefix(prefix) {
                // The key keeps its case; only the prefix is case-insensitive.
                let key = &word[word.len() - key.len()..];
                if !key.is_empty() {
                    return Ok(Field::Tag(key.to_owned()));
                }
                return match self.next() {
                    Some(Token::Ident(k)) | Some(Token::Text(k)) if !k.is_empty() => {
                        Ok(Field::Tag(k))
                    }
                    _ => Err(format!("{word} needs a tag key")),
                };
            }
        }
        let field = match lower.as_str() {
            "name" | "attributes.name" => Field::Name,
            "run_id" if self.target == Target::Versions => Field::RunId,
            "source_path" if self.target == Target::Versions => Field::SourcePath,
            "version_number" if self.target == Target::Versions => Field::VersionNumber,
            _ => return Err(format!("the field {word:?} is not supported")),
        };
        Ok(field)
    }

    fn op(&mut self) -> Result<Op, String> {
        match self.next() {
            Some(Token::Op("=")) => Ok(Op::Eq),
            Some(Token::Op("!=")) => Ok(Op::Ne),
            Some(Token::Op("<")) => Ok(Op::Lt),
            Some(Token::Op("<=")) => Ok(Op::Le),
            Some(Token::Op(">")) => Ok(Op::Gt),
            Some(Token::Op(">=")) => Ok(Op::Ge),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("like") => Ok(Op::Like),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("ilike") => Ok(Op::ILike),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("in") => Ok(Op::In),
            Some(t) => Err(format!("expected an operator, found {}", t.describe())),
            None => Err("expected an operator, found the end".into()),
        }
    }

    fn clause(&mut self) -> Result<Clause, String> {
        let field = self.field()?;
        let op = self.op()?;
        let allowed: &[Op] = match field {
            Field::Name => &[Op::Eq, Op::Ne, Op::Like, Op::ILike, Op::In],
            Field::Tag(_) | Field::SourcePath => &[Op::Eq, Op::Ne, Op::Like, Op::ILike],
            Field::RunId => &[Op::Eq, Op::Ne, Op::In],
            Field::VersionNumber => &[Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge],
        };
        if !allowed.contains(&op) {
            return Err(format!("{op:?} is not supported on {field:?}"));
        }
        let value = match (op, &field) {
            (Op::In, _) => Value::List(self.list()?),
            (_, Field::VersionNumber) => match self.next() {
                Some(Token::Word(w)) | Some(Token::Text(w)) => w
                    .parse()
                    .map(Value::Number)
                    .map_err(|_| format!("version_number needs a number, found {w:?}"))?,
                Some(t) => return Err(format!("expected a number, found {}", t.describe())),
                None => return Err("expected a number, found the end".into()),
            },
            _ => match self.next() {
                Some(Token::Text(t)) => Value::Text(t),
                Some(t) => {
                    return Err(format!("expected a quoted string, found {}", t.describe()));
                }
                None => return Err("expected a quoted string, found the end".into()),
            },
        };
        Ok(Clause { field, op, value })
    }

    fn list(&mut self) -> Result<Vec<String>, String> {
        if self.next() != Some(Token::Open) {
            return Err("IN needs a parenthesized list of strings".into());
        }
        let mut items = Vec::new();
        loop {
            match self.next() {
                Some(Token::Text(t)) => items.push(t),
                _ => return Err("IN needs a list of quoted strings".into()),
            }
            match self.next() {
                Some(Token::Comma) => continue,
                Some(Token::Close) => return Ok(items),
                _ => return Err("expected ',' or ')' in the IN list".into()),
            }
        }
    }
}

/// A key search results are sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SortKey {
    Name,
    VersionNumber,
    CreationTimestamp,
    LastUpdatedTimestamp,
}

/// `order_by`: keys with their direction (`true`: ascending).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Order(pub(crate) Vec<(SortKey, bool)>);

impl Order {
    /// Parses MLflow's `order_by` entries, e.g. `name ASC`,
    /// `version_number DESC`, `last_updated_timestamp`. Entries are applied
    /// in order; ties are then broken by name (ascending) and, for versions,
    /// number (descending), so every order is total and pages are stable.
    pub(crate) fn parse(entries: &[String], target: Target) -> Result<Order, String> {
        let mut keys = Vec::new();
        for entry in entries {
            let mut words = entry.split_whitespace();
            let Some(field) = words.next() else {
                continue;
            };
            let ascending = match words.next().map(|w| w.to_ascii_uppercase()) {
                None => true,
                Some(d) if d == "ASC" => true,
                Some(d) if d == "DESC" => false,
                Some(d) => return Err(format!("order_by {entry:?}: {d:?} is not ASC or DESC")),
            };
            if words.next().is_some() {
                return Err(format!("order_by {entry:?}: expected '<field> [ASC|DESC]'"));
            }
            let key = match (field.to_ascii_lowercase().as_str(), target) {
                ("name", _) => SortKey::Name,
                ("version_number", Target::Versions) => SortKey::VersionNumber,
                ("creation_timestamp" | "timestamp", _) => SortKey::CreationTimestamp,
                ("last_updated_timestamp", _) => SortKey::LastUpdatedTimestamp,
                _ => {
                    return Err(format!(
                        "order_by {entry:?}: supported fields are name, {}creation_timestamp \
                         (or timestamp) and last_updated_timestamp, each optionally followed \
                         by ASC or DESC",
                        if target == Target::Versions {
                            "version_number, "
                        } else {
                            ""
                        }
                    ));
                }
            };
            keys.push((key, ascending));
        }
        if keys.is_empty() {
            // MLflow's defaults.
            keys = match target {
                Target::Models => vec![(SortKey::Name, true)],
                Target::Versions => vec![
                    (SortKey::LastUpdatedTimestamp, false),
                    (SortKey::Name, true),
                    (SortKey::VersionNumber, false),
                ],
            };
        }
        keys.push((SortKey::Name, true));
        if target == Target::Versions {
            keys.push((SortKey::VersionNumber, false));
        }
        Ok(Order(keys))
    }

    /// Compares two rows, given each row's sort values.
    pub(crate) fn compare(&self, a: &SortValues, b: &SortValues) -> Ordering {
        for &(key, ascending) in &self.0 {
            let o = match key {
                SortKey::Name => a.name.cmp(b.name),
                SortKey::VersionNumber => a.version.cmp(&b.version),
                SortKey::CreationTimestamp => a.created.cmp(&b.created),
                SortKey::LastUpdatedTimestamp => a.updated.cmp(&b.updated),
            };
            let o = if ascending { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

/// What a row is sorted by.
pub(crate) struct SortValues<'a> {
    pub(crate) name: &'a str,
    pub(crate) version: u64,
    pub(crate) created: i64,
    pub(crate) updated: i64,
}

/// The page token of the row after `offset` rows: opaque to clients, the
/// offset in decimal here (as MLflow's own stores page, by offset; a row
/// added between two pages can shift the next one).
pub(crate) fn page_token(offset: usize) -> String {
    format!("offset:{offset}")
}

/// The offset a page token names (none: the first page).
pub(crate) fn parse_page_token(token: Option<&str>) -> Result<usize, String> {
    match token {
        None | Some("") => Ok(0),
        Some(t) => t
            .strip_prefix("offset:")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("page_token {t:?} is not one this server handed out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct M<'a> {
        name: &'a str,
        tags: &'a [(&'a str, &'a str)],
        source: &'a str,
        number: u64,
    }

    impl Subject for M<'_> {
        fn name(&self) -> &str {
            self.name
        }
        fn tag(&self, key: &str) -> Option<&str> {
            self.tags.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
        }
        fn source(&self) -> &str {
            self.source
        }
        fn version_number(&self) -> u64 {
            self.number
        }
    }

    fn m<'a>(name: &'a str, tags: &'a [(&'a str, &'a str)]) -> M<'a> {
        M {
            name,
            tags,
            source: "mlflow-artifacts:/uploads/x",
            number: 3,
        }
    }

    fn matches(filter: &str, target: Target, subject: &M) -> bool {
        Filter::parse(filter, target)
            .unwrap_or_else(|e| panic!("{e}"))
            .matches(subject)
    }

    #[test]
    fn like_matches_as_sql_does() {
        assert!(like("fraud", "fr%", false));
        assert!(like("fraud", "%aud", false));
        assert!(like("fraud", "f_a_d", false));
        assert!(like("fraud", "%", false));
        assert!(like("", "%", false));
        assert!(!like("fraud", "fr", false));
        assert!(!like("fraud", "Fr%", false));
        assert!(like("fraud", "FR%", true));
        assert!(like("a-b-c", "%-%-%", false));
        assert!(!like("ab", "a_b", false));
        assert!(like("aaab", "%a%ab", false));
        // Many `%` on a long text stays fast (no exponential backtracking).
        let text = "a".repeat(5_000);
        assert!(!like(&text, &format!("{}b", "%a".repeat(50)), false));
    }

    #[test]
    fn what_the_real_client_sends_parses() {
        let fraud = m("fraud", &[]);
        let prompt = m("fraud", &[("mlflow.prompt.is_prompt", "true")]);
        // MlflowClient.search_registered_models("name LIKE 'fr%'") sends this.
        let f = "name LIKE 'fr%' AND tag.`mlflow.prompt.is_prompt` != 'true'";
        assert!(matches(f, Target::Models, &fraud));
        assert!(!matches(f, Target::Models, &prompt));
        assert!(matches("name='fraud'", Target::Versions, &fraud));
        assert!(!matches("name = 'other'", Target::Versions, &fraud));
        assert!(matches("name ILIKE 'FR%'", Target::Models, &fraud));
        assert!(matches("", Target::Models, &fraud));
    }

    #[test]
    fn quotes_and_escapes() {
        let odd = m("o'k", &[("team key", "a\"b")]);
        assert!(matches(r"name = 'o\'k'", Target::Models, &odd));
        assert!(matches("name = 'o''k'", Target::Models, &odd));
        assert!(matches(r#"name = "o'k""#, Target::Models, &odd));
        assert!(matches(r#"tags.`team key` = 'a"b'"#, Target::Models, &odd));
        assert!(matches(r#"tags."team key" = "a\"b""#, Target::Models, &odd));
        assert!(!matches("name = 'o'", Target::Models, &odd));
        for bad in ["name = 'open", "name = 'x\\", "tags.`k = 'v'"] {
            assert!(Filter::parse(bad, Target::Models).is_err(), "{bad}");
        }
    }

    #[test]
    fn version_fields() {
        let v = m("fraud", &[("k", "v")]);
        assert!(matches("run_id = ''", Target::Versions, &v));
        assert!(!matches("run_id = 'abc'", Target::Versions, &v));
        assert!(!matches("run_id IN ('a', 'b')", Target::Versions, &v));
        assert!(matches(
            "name IN ('x', 'fraud') AND tags.k = 'v'",
            Target::Versions,
            &v
        ));
        assert!(matches("version_number >= 3", Target::Versions, &v));
        assert!(!matches("version_number > 3", Target::Versions, &v));
        assert!(matches("version_number = '3'", Target::Versions, &v));
        assert!(matches(
            "source_path LIKE 'mlflow-artifacts:/uploads/%'",
            Target::Versions,
            &v
        ));
        // An absent tag is "not equal", and fails every other test.
        assert!(matches("tags.other != 'v'", Target::Versions, &v));
        assert!(!matches("tags.other = 'v'", Target::Versions, &v));
        assert!(!matches("tags.other LIKE '%'", Target::Versions, &v));
    }

    #[test]
    fn unsupported_filters_say_what_is_supported() {
        for (bad, target) in [
            ("name = 'a' OR name = 'b'", Target::Models),
            ("run_id = 'x'", Target::Models),
            ("version_number > 1", Target::Models),
            ("creation_timestamp > 5", Target::Versions),
            ("name LIKE fr%", Target::Models),
            ("name > 'a'", Target::Models),
            ("name = 'a' AND", Target::Models),
            ("name = 'a'; drop table x", Target::Models),
            ("version_number > 'x'", Target::Versions),
        ] {
            let e = Filter::parse(bad, target).expect_err(bad);
            assert!(e.contains("supported"), "{bad}: {e}");
        }
        assert_eq!(
            Filter::parse("name='m'", Target::Versions)
                .unwrap()
                .exact_name(),
            Some("m")
        );
    }

    #[test]
    fn orders_parse_and_are_total() {
        let o = Order::parse(&["version_number DESC".into()], Target::Versions).unwrap();
        assert_eq!(o.0[0], (SortKey::VersionNumber, false));
        let o = Order::parse(&["name".into()], Target::Models).unwrap();
        assert_eq!(o.0[0], (SortKey::Name, true));
        assert!(Order::parse(&["version_number".into()], Target::Models).is_err());
        assert!(Order::parse(&["name UP".into()], Target::Models).is_err());
        assert!(Order::parse(&["name ASC x".into()], Target::Models).is_err());
        let o = Order::parse(&[], Target::Versions).unwrap();
        let row = |name, version, updated| SortValues {
            name,
            version,
            created: 0,
            updated,
        };
        // Default: newest change first, then name, then number descending.
        assert_eq!(o.compare(&row("a", 1, 5), &row("a", 2, 4)), Ordering::Less);
        assert_eq!(
            o.compare(&row("a", 1, 5), &row("a", 2, 5)),
            Ordering::Greater
        );
        assert_eq!(o.compare(&row("a", 2, 5), &row("b", 9, 5)), Ordering::Less);
    }

    #[test]
    fn page_tokens_round_trip() {
        assert_eq!(parse_page_token(Some(&page_token(42))), Ok(42));
        assert_eq!(parse_page_token(None), Ok(0));
        assert!(parse_page_token(Some("eyJvZmZzZXQiOiAxfQ==")).is_err());
    }
}
