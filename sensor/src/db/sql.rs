//! SQL statements → what an analyst may read of them: a template with
//! every literal replaced (literals may hold personal data or secrets),
//! the statement's kind and the objects it names.
//!
//! A tokenizer, not a parser: it must never fail on what a server accepts
//! (every dialect, every extension), only say less. Comments are dropped
//! (a `-- token=…` is as secret as a literal); quoted identifiers are kept
//! as written; unquoted words are folded as PostgreSQL and MySQL fold them
//! (keywords upper case, names lower case) so one statement written two
//! ways is one template.

/// Longest template kept; the rest is cut and the template marked.
const TEMPLATE_MAX: usize = 4096;
/// Most object names kept per statement text.
const OBJECTS_MAX: usize = 16;

/// What one statement text (possibly several statements separated by `;`)
/// says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Normalised {
    /// Literals and parameters as `?`, lists of them as one `?`.
    pub template: String,
    /// The most consequential statement's verb, lower case (`select`,
    /// `drop`, …); `other` for what is not recognised.
    pub kind: &'static str,
    /// Tables (and other objects) named, lower case unless quoted.
    pub objects: Vec<String>,
    /// An `UPDATE` or `DELETE` without `WHERE` among the statements.
    pub unbounded_write: bool,
    /// The template (or the text it came from) was cut.
    pub truncated: bool,
}

/// Verbs by how much they can change, least first: several statements
/// sent together are named by the most consequential.
const KINDS: [&str; 19] = [
    "other", "begin", "commit", "rollback", "set", "show", "explain", "select", "copy", "call",
    "insert", "update", "merge", "delete", "create", "alter", "grant", "revoke", "truncate",
];
/// `drop` outranks every other kind.
const DROP_RANK: usize = KINDS.len();

fn rank(kind: &str) -> usize {
    if kind == "drop" {
        return DROP_RANK;
    }
    KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

/// The class of a kind, as the event names it.
pub fn class(kind: &str) -> &'static str {
    match kind {
        "select" | "show" | "explain" => "read",
        "insert" | "update" | "delete" | "merge" | "copy" | "call" => "write",
        "create" | "alter" | "drop" | "truncate" => "ddl",
        "grant" | "revoke" => "dcl",
        "begin" | "commit" | "rollback" => "transaction",
        "set" => "session",
        _ => "other",
    }
}

/// Words printed upper case in templates: SQL's reserved words and those
/// statements start with. Everything else unquoted is a name.
const KEYWORDS: &[&str] = &[
    "add",
    "all",
    "alter",
    "and",
    "any",
    "as",
    "asc",
    "begin",
    "between",
    "by",
    "call",
    "cascade",
    "case",
    "cast",
    "check",
    "column",
    "commit",
    "constraint",
    "copy",
    "create",
    "cross",
    "database",
    "default",
    "delete",
    "desc",
    "distinct",
    "do",
    "drop",
    "else",
    "end",
    "exists",
    "explain",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "full",
    "function",
    "grant",
    "group",
    "having",
    "if",
    "ilike",
    "in",
    "index",
    "inner",
    "insert",
    "intersect",
    "into",
    "is",
    "join",
    "key",
    "left",
    "like",
    "limit",
    "merge",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "outer",
    "primary",
    "procedure",
    "references",
    "rename",
    "replace",
    "restrict",
    "returning",
    "revoke",
    "right",
    "role",
    "rollback",
    "schema",
    "select",
    "sequence",
    "set",
    "show",
    "table",
    "temporary",
    "then",
    "to",
    "transaction",
    "true",
    "truncate",
    "union",
    "unique",
    "update",
    "user",
    "using",
    "values",
    "view",
    "when",
    "where",
    "with",
];

fn is_keyword(lower: &str) -> bool {
    KEYWORDS.contains(&lower)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    /// An unquoted word, folded: keywords upper case, names lower case.
    Word(String),
    /// A quoted identifier, as written with its quotes.
    Quoted(String),
    /// A literal or a parameter.
    Value,
    Punct(char),
}

fn tokens(sql: &str) -> Vec<Tok> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            _ if c.is_ascii_whitespace() => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i = (i + 2).min(b.len());
            }
            b'\'' => {
                i = skip_string(b, i + 1, b'\'', false);
                out.push(Tok::Value);
            }
            b'"' | b'`' => {
                let end = skip_string(b, i + 1, c, false);
                out.push(Tok::Quoted(sql[i..end].to_string()));
                i = end;
            }
            b'$' => {
                // $1 parameter, or $tag$ … $tag$ dollar quoting.
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                if j > i + 1 {
                    out.push(Tok::Value);
                    i = j;
                    continue;
                }
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                if b.get(j) == Some(&b'$') {
                    let tag = &b[i..=j];
                    let body = j + 1;
                    let end = b[body..]
                        .windows(tag.len())
                        .position(|w| w == tag)
                        .map_or(b.len(), |p| body + p + tag.len());
                    out.push(Tok::Value);
                    i = end;
                } else {
                    out.push(Tok::Punct('$'));
                    i += 1;
                }
            }
            b'?' => {
                out.push(Tok::Value);
                i += 1;
            }
            b'0'..=b'9' => {
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'.') {
                    j += 1;
                }
                out.push(Tok::Value);
                i = j;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let mut j = i;
                while j < b.len()
                    && (b[j].is_ascii_alphanumeric()
                        || b[j] == b'_'
                        || b[j] == b'$'
                        || b[j] >= 0x80)
                {
                    j += 1;
                }
                // E'…' (escapes), B'…', X'…', N'…': a prefixed literal.
                if j == i + 1 && b.get(j) == Some(&b'\'') {
                    let escapes = matches!(c, b'e' | b'E');
                    i = skip_string(b, j + 1, b'\'', escapes);
                    out.push(Tok::Value);
                    continue;
                }
                let lower = sql[i..j].to_lowercase();
                out.push(Tok::Word(if is_keyword(&lower) {
                    lower.to_uppercase()
                } else {
                    lower
                }));
                i = j;
            }
            _ => {
                out.push(Tok::Punct(c as char));
                i += 1;
            }
        }
    }
    out
}

/// Index after the closing `quote` of a string starting at `i` (after its
/// opening quote); a doubled quote is one quote; with `escapes`, a
/// backslash escapes the next byte. Unterminated: the end.
fn skip_string(b: &[u8], mut i: usize, quote: u8, escapes: bool) -> usize {
    while i < b.len() {
        if escapes && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// Folds `?, ?, ?` into `?` and `(?), (?)` into `(?)`: an IN list or a
/// multi-row VALUES is one template whatever its length.
fn fold_lists(toks: Vec<Tok>) -> Vec<Tok> {
    let mut out: Vec<Tok> = Vec::with_capacity(toks.len());
    for t in toks {
        out.push(t);
        loop {
            let n = out.len();
            if n >= 3
                && out[n - 1] == Tok::Value
                && out[n - 2] == Tok::Punct(',')
                && out[n - 3] == Tok::Value
            {
                out.truncate(n - 2);
                continue;
            }
            if n >= 7
                && out[n - 7..n - 4] == [Tok::Punct('('), Tok::Value, Tok::Punct(')')]
                && out[n - 4] == Tok::Punct(',')
                && out[n - 3..] == [Tok::Punct('('), Tok::Value, Tok::Punct(')')]
            {
                out.truncate(n - 4);
                continue;
            }
            break;
        }
    }
    out
}

fn render(toks: &[Tok]) -> String {
    let mut s = String::new();
    let mut prev: Option<&Tok> = None;
    for t in toks {
        let text: &str = match t {
            Tok::Word(w) | Tok::Quoted(w) => w,
            Tok::Value => "?",
            Tok::Punct(c) => {
                // `count(*)`: a name's parenthesis is a call (a keyword's,
                // `IN (?)`, is not).
                let call = *c == '('
                    && matches!(prev, Some(Tok::Word(w)) if !w.bytes().any(|b| b.is_ascii_uppercase()));
                // `<>`, `>=`, `||`: one operator, written as one.
                let operator = |c: char| "<>=!|&~@#%^*+-/".contains(c);
                let joined = operator(*c) && matches!(prev, Some(Tok::Punct(p)) if operator(*p));
                let no_space_before =
                    call || joined || matches!(c, ',' | ')' | '.' | ';' | ':' | '[' | ']');
                let after_open = matches!(prev, Some(Tok::Punct('(' | '.' | ':' | '[')));
                if !(s.is_empty() || no_space_before || after_open) {
                    s.push(' ');
                }
                s.push(*c);
                prev = Some(t);
                continue;
            }
        };
        if !s.is_empty() && !matches!(prev, Some(Tok::Punct('(' | '.' | ':' | '['))) {
            s.push(' ');
        }
        s.push_str(text);
        prev = Some(t);
    }
    s
}

/// The statements of a token list, split at top-level `;`.
fn statements(toks: &[Tok]) -> impl Iterator<Item = &[Tok]> {
    toks.split(|t| *t == Tok::Punct(';'))
        .filter(|s| !s.is_empty())
}

fn word(t: Option<&Tok>) -> Option<&str> {
    match t {
        Some(Tok::Word(w)) => Some(w),
        _ => None,
    }
}

/// The verb of one statement: its first word, or for `WITH …` the first
/// statement verb at the top level after the common table expressions.
fn verb(st: &[Tok]) -> &'static str {
    let first = word(st.first()).unwrap_or_default();
    let v = if first == "WITH" {
        let mut depth = 0i32;
        st.iter()
            .skip(1)
            .find_map(|t| match t {
                Tok::Punct('(') => {
                    depth += 1;
                    None
                }
                Tok::Punct(')') => {
                    depth -= 1;
                    None
                }
                Tok::Word(w)
                    if depth == 0
                        && matches!(
                            w.as_str(),
                            "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE"
                        ) =>
                {
                    Some(w.as_str())
                }
                _ => None,
            })
            .unwrap_or("SELECT")
    } else {
        first
    };
    match v {
        "START" => "begin",
        "END" | "COMMIT" => "commit",
        "ABORT" | "ROLLBACK" => "rollback",
        "TABLE" | "VALUES" => "select",
        _ => {
            let lower = v.to_ascii_lowercase();
            KINDS
                .iter()
                .chain(std::iter::once(&"drop"))
                .find(|k| **k == lower)
                .copied()
                .unwrap_or("other")
        }
    }
}

/// Words after which a statement names an object.
fn names_object_after(prev: &str, verb: &str) -> bool {
    match prev {
        "FROM" | "JOIN" | "INTO" | "UPDATE" | "TABLE" | "VIEW" | "INDEX" | "SEQUENCE"
        | "SCHEMA" | "DATABASE" | "FUNCTION" | "PROCEDURE" | "USING" => true,
        // GRANT … ON obj, TRUNCATE obj, and what follows ON in DDL (an
        // index's table) are objects too.
        "ON" => matches!(verb, "grant" | "revoke" | "create" | "drop"),
        "TRUNCATE" => true,
        _ => false,
    }
}

/// Objects one statement names: a (possibly qualified) name after a word
/// that introduces one, and every name of a comma list that follows.
fn objects(st: &[Tok], verb: &str, out: &mut Vec<String>) {
    let mut i = 0;
    while i < st.len() {
        let introduces = word(st.get(i)).is_some_and(|w| names_object_after(w, verb));
        i += 1;
        if !introduces {
            continue;
        }
        loop {
            // IF [NOT] EXISTS, ONLY: not names.
            while let Some(w) = word(st.get(i)) {
                if matches!(w, "IF" | "NOT" | "EXISTS" | "ONLY" | "TABLE") {
                    i += 1;
                } else {
                    break;
                }
            }
            let mut name = String::new();
            while let Some(t) = st.get(i) {
                match t {
                    Tok::Word(w) if name.is_empty() || name.ends_with('.') => {
                        if is_keyword(&w.to_ascii_lowercase()) && name.is_empty() {
                            break;
                        }
                        name.push_str(w);
                    }
                    Tok::Quoted(q) if name.is_empty() || name.ends_with('.') => name.push_str(q),
                    Tok::Punct('.') if !name.is_empty() => name.push('.'),
                    _ => break,
                }
                i += 1;
            }
            if !name.is_empty() && !out.contains(&name) && out.len() < OBJECTS_MAX {
                out.push(name);
            }
            if st.get(i) == Some(&Tok::Punct(',')) && word(st.get(i + 1)).is_some()
                || matches!(st.get(i + 1), Some(Tok::Quoted(_)))
                    && st.get(i) == Some(&Tok::Punct(','))
            {
                i += 1;
                continue;
            }
            break;
        }
    }
}

/// Normalises one statement text; `cut` says the text itself was already
/// cut by the capture.
pub fn normalise(sql: &str, cut: bool) -> Normalised {
    let toks = fold_lists(tokens(sql));
    let mut kind = "other";
    let mut objs = Vec::new();
    let mut unbounded_write = false;
    for st in statements(&toks) {
        let v = verb(st);
        if rank(v) > rank(kind) || kind == "other" {
            kind = v;
        }
        if matches!(v, "update" | "delete") && !st.contains(&Tok::Word("WHERE".into())) {
            unbounded_write = true;
        }
        objects(st, v, &mut objs);
    }
    let mut template = render(&toks);
    let mut truncated = cut;
    if template.len() > TEMPLATE_MAX {
        let mut end = TEMPLATE_MAX;
        while !template.is_char_boundary(end) {
            end -= 1;
        }
        template.truncate(end);
        truncated = true;
    }
    if truncated {
        template.push('…');
    }
    Normalised {
        template,
        kind,
        objects: objs,
        unbounded_write,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_become_placeholders_and_lists_fold() {
        let n = normalise(
            "select * from Users where email = 'a@b.example' and id in (1, 2, 3) -- token=s3cr3t",
            false,
        );
        assert_eq!(
            n.template,
            "SELECT * FROM users WHERE email = ? AND id IN (?)"
        );
        assert_eq!(n.kind, "select");
        assert_eq!(n.objects, ["users"]);
        let n = normalise("SELECT count(*) FROM t WHERE x IN (SELECT 1)", false);
        assert_eq!(n.template, "SELECT count(*) FROM t WHERE x IN (SELECT ?)");
        let n = normalise("select a::text from t where b <> 1 and c >= 2", false);
        assert_eq!(n.template, "SELECT a::text FROM t WHERE b <> ? AND c >= ?");
        assert!(!n.template.contains("s3cr3t") && !n.template.contains("a@b"));
    }

    #[test]
    fn every_literal_form_is_hidden() {
        for (sql, secret) in [
            ("SELECT E'it\\'s PLANTED'", "PLANTED"),
            ("SELECT $q$PLANTED$q$", "PLANTED"),
            ("SELECT $$PLANTED$$", "PLANTED"),
            ("SELECT x'504c414e544544'", "504c"),
            ("SELECT 'un''terminated PLANTED", "PLANTED"),
            ("SELECT 1 /* PLANTED */", "PLANTED"),
            ("ALTER USER bob PASSWORD 'PLANTED'", "PLANTED"),
            ("SELECT 123456789", "123456789"),
            ("SELECT 1.5e10", "1.5e10"),
        ] {
            let n = normalise(sql, false);
            assert!(!n.template.contains(secret), "{sql} → {}", n.template);
        }
    }

    #[test]
    fn multi_row_values_fold_to_one_row() {
        let a = normalise(
            "INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (3, 'z')",
            false,
        );
        let b = normalise("insert into T (a,b) values ($1,$2)", false);
        assert_eq!(a.template, "INSERT INTO t(a, b) VALUES (?)");
        assert_eq!(a.template, b.template);
        assert_eq!(a.kind, "insert");
        assert_eq!(a.objects, ["t"]);
    }

    #[test]
    fn kinds_and_objects_of_ddl() {
        let n = normalise(
            "DROP TABLE IF EXISTS staging_sessions, public.\"Audit\"",
            false,
        );
        assert_eq!(n.kind, "drop");
        assert_eq!(class(n.kind), "ddl");
        assert_eq!(n.objects, ["staging_sessions", "public.\"Audit\""]);
        let n = normalise("truncate only orders", false);
        assert_eq!(
            (n.kind, n.objects.as_slice()),
            ("truncate", &["orders".to_string()][..])
        );
        let n = normalise("GRANT SELECT ON accounts TO reporter", false);
        assert_eq!(
            (n.kind, n.objects.as_slice()),
            ("grant", &["accounts".to_string()][..])
        );
        let n = normalise("CREATE INDEX idx ON orders (id)", false);
        assert_eq!(n.kind, "create");
        assert_eq!(n.objects, ["idx", "orders"]);
    }

    #[test]
    fn several_statements_are_named_by_the_most_consequential() {
        let n = normalise("BEGIN; SELECT 1 FROM a; DROP TABLE b; COMMIT", false);
        assert_eq!(n.kind, "drop");
        assert_eq!(n.objects, ["a", "b"]);
        assert_eq!(n.template, "BEGIN; SELECT ? FROM a; DROP TABLE b; COMMIT");
    }

    #[test]
    fn writes_without_where_are_unbounded() {
        assert!(normalise("DELETE FROM sessions", false).unbounded_write);
        assert!(normalise("update accounts set balance = 0", false).unbounded_write);
        assert!(!normalise("DELETE FROM sessions WHERE id = 4", false).unbounded_write);
        let n = normalise("WITH x AS (SELECT id FROM a) DELETE FROM b", false);
        assert_eq!(n.kind, "delete");
        assert!(n.unbounded_write);
    }

    #[test]
    fn long_text_is_cut_and_marked() {
        let sql = format!("SELECT {} FROM t", "col, ".repeat(2000));
        let n = normalise(&sql, false);
        assert!(n.truncated && n.template.ends_with('…'));
        assert!(n.template.len() <= TEMPLATE_MAX + '…'.len_utf8());
        assert!(normalise("SELECT 1", true).truncated);
    }

    #[test]
    fn anything_at_all_normalises_without_panic() {
        for sql in [
            "",
            ";;;",
            "'",
            "$",
            "$a",
            "/*",
            "\"",
            "E'\\",
            "((((",
            "日本 'x'",
            "-",
        ] {
            let _ = normalise(sql, false);
        }
        let bytes: Vec<u8> = (0..=255u8).collect();
        let _ = normalise(&String::from_utf8_lossy(&bytes), false);
    }
}
