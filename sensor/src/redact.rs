//! Secrets in command lines never reach an event: credentials passed as
//! arguments (`curl -H "Authorization: Bearer …"`, `--password=…`,
//! `?api_key=…` in a URL, `https://user:pass@host`, `API_KEY=… cmd`) are
//! replaced before the process table stores the command line.

const MASK: &str = "<redacted>";

/// Header names whose values are credentials, in command lines and in
/// captured HTTP alike (operators add more: `http.secret_headers`).
pub const SECRET_HEADERS: [&str; 8] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "set-cookie",
    "x-goog-api-key",
    "x-auth-token",
];

/// Operator-added credential headers, lowercase; set once at start. A
/// process-wide policy, like the built-in list: every layer that sees
/// headers (command lines, HTTP parsers) must apply the same one.
static EXTRA_SECRET_HEADERS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Adds header names to the credential list for the life of the process
/// (only the first call counts).
pub fn set_extra_secret_headers(names: &[String]) {
    let _ = EXTRA_SECRET_HEADERS.set(names.iter().map(|n| n.to_ascii_lowercase()).collect());
}

/// `name` must be lowercase.
pub fn is_secret_header(name: &str) -> bool {
    SECRET_HEADERS.contains(&name)
        || EXTRA_SECRET_HEADERS
            .get()
            .is_some_and(|extra| extra.iter().any(|h| h == name))
}

/// Whether a header's value must not be shown: a credential header, or
/// one whose name says it carries a secret (`X-Amz-Security-Token`,
/// `PRIVATE-TOKEN`, `Ocp-Apim-Subscription-Key`, …). Broader than
/// `is_secret_header` (whose values are fingerprinted as the call's
/// credential): masking a nonce such as `Sec-WebSocket-Key` costs nothing.
/// `name` must be lowercase.
pub fn is_sensitive_header(name: &str) -> bool {
    is_secret_header(name) || is_secret_name(name) || name.contains("signature")
}

/// Words that make an option, query parameter or variable a secret.
const SECRET_WORDS: [&str; 9] = [
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api-key",
    "api_key",
    "credential",
    "auth",
];

fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let n = n.trim_start_matches('-');
    SECRET_WORDS.iter().any(|w| n.contains(w))
        || matches!(n, "key" | "k" | "sig" | "signature" | "pass" | "pwd")
        || n.ends_with("_key")
        || n.ends_with("-key")
}

/// Options whose next argument is a secret, or `user:secret`.
fn takes_secret(opt: &str) -> bool {
    let bare = opt.trim_start_matches('-');
    opt.starts_with('-') && !bare.is_empty() && is_secret_name(bare)
}

/// Redacts a command line.
pub fn argv(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut next_is_secret = false;
    let mut next_is_userpass = false;
    for a in args {
        if next_is_secret {
            out.push(MASK.to_string());
            next_is_secret = false;
            continue;
        }
        if next_is_userpass {
            out.push(user_pass(a));
            next_is_userpass = false;
            continue;
        }
        match a.as_str() {
            // curl -u/--user user:password, --proxy-user
            "-u" | "--user" | "--proxy-user" | "-U" => {
                out.push(a.clone());
                next_is_userpass = true;
                continue;
            }
            _ => {}
        }
        if let Some((opt, _)) = a.split_once('=')
            && opt.starts_with('-')
            && is_secret_name(opt)
        {
            out.push(format!("{opt}={MASK}"));
            continue;
        }
        if takes_secret(a) && !a.contains('=') {
            out.push(a.clone());
            next_is_secret = true;
            continue;
        }
        out.push(text(a));
    }
    out
}

fn user_pass(a: &str) -> String {
    match a.split_once(':') {
        Some((user, _)) => format!("{user}:{MASK}"),
        None => a.to_string(),
    }
}

/// Redacts secrets inside one argument: header lines, URL credentials and
/// query values, `NAME=value` assignments, bearer tokens and well-known key
/// shapes.
pub fn text(a: &str) -> String {
    // "Authorization: Bearer x" and friends (curl -H, wget --header).
    if let Some((name, _)) = a.split_once(':') {
        let lname = name.trim().to_ascii_lowercase();
        let token = lname
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if token && is_sensitive_header(&lname) {
            return format!("{name}: {MASK}");
        }
    }
    // API_KEY=..., OPENAI_API_KEY=... (env assignments on a shell line).
    if let Some((name, _)) = a.split_once('=')
        && !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && is_secret_name(name)
    {
        return format!("{name}={MASK}");
    }
    let mut s = a.to_string();
    if s.contains("://") {
        s = url(&s);
    }
    let s = header_lines(&s);
    let s = fields(&s);
    let s = code_assignments(&s);
    tokens(&s)
}

/// Header lines inside a longer text (`sh -c "curl -H 'x-api-key: v' …"`,
/// a request head): the value of a sensitive one, up to its quote or the
/// end of its line.
fn header_lines(s: &str) -> String {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"([A-Za-z0-9_-]+)([ \t]*:[ \t]*)([^'"\r\n]+)"#).expect("valid regex")
    });
    RE.replace_all(s, |c: &regex::Captures| {
        if is_sensitive_header(&c[1].to_ascii_lowercase()) && !c[3].starts_with("//") {
            // The scheme says what kind of credential it was.
            let scheme = c[3]
                .split_once(' ')
                .map(|(w, _)| w)
                .filter(|w| ["bearer", "basic", "token"].contains(&w.to_ascii_lowercase().as_str()))
                .map(|w| format!("{w} "))
                .unwrap_or_default();
            format!("{}{}{scheme}{MASK}", &c[1], &c[2])
        } else {
            c[0].to_string()
        }
    })
    .into_owned()
}

/// `name=value` fields of a form body or query string, `&`- or
/// space-separated (`username=bob&password=v`): secret-named ones masked.
fn fields(s: &str) -> String {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(^|[&?;\s])([A-Za-z0-9_.\[\]-]+)=([^&;\s]*)").expect("valid regex")
    });
    RE.replace_all(s, |c: &regex::Captures| {
        if is_secret_name(&c[2]) && !c[3].is_empty() && &c[3] != MASK {
            format!("{}{}={MASK}", &c[1], &c[2])
        } else {
            c[0].to_string()
        }
    })
    .into_owned()
}

/// Secrets assigned in code or data passed as an argument (`python -c`,
/// `sh -c`, JSON): `'x-api-key': 'v'`, `api_key="v"`, `"password": "v"`.
fn code_assignments(s: &str) -> String {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(?i)(["']?[\w-]*(?:authorization|api[-_]?key|token|secret|password|passwd|cookie|credential)[\w-]*["']?\s*[:=]\s*)(["'])([^"']*)(["'])"#,
        )
        .expect("valid regex")
    });
    RE.replace_all(s, |c: &regex::Captures| {
        format!("{}{}{MASK}{}", &c[1], &c[2], &c[4])
    })
    .into_owned()
}

/// `scheme://user:pass@host/path?key=v&x=y` → password and secret query
/// values masked.
fn url(s: &str) -> String {
    let (scheme, rest) = match s.split_once("://") {
        Some(p) => p,
        None => return s.to_string(),
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => format!("{}@{host}", user_pass(userinfo)),
        None => authority.to_string(),
    };
    format!("{scheme}://{authority}{}", target(tail))
}

/// A request target (`/path?query#frag`) with secret query values masked.
pub fn target(t: &str) -> String {
    match t.split_once('?') {
        Some((path, query)) => {
            let (query, frag) = match query.split_once('#') {
                Some((q, f)) => (q, format!("#{f}")),
                None => (query, String::new()),
            };
            let q: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if is_secret_name(k) => format!("{k}={MASK}"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{path}?{}{frag}", q.join("&"))
        }
        None => t.to_string(),
    }
}

/// Bearer/Basic credentials and key shapes anywhere in the text.
fn tokens(s: &str) -> String {
    let mut out = Vec::new();
    let mut after_scheme = false;
    for word in s.split(' ') {
        let lw = word.to_ascii_lowercase();
        if after_scheme && !word.is_empty() && !word.starts_with(MASK) {
            // The credential is the word's leading token characters
            // (base64 and token68); a quote or bracket that closes after
            // it stays, or the command shown is not the one run. A word
            // that does not start with one goes whole.
            let end = word
                .find(|c: char| !(c.is_ascii_alphanumeric() || "-._~+/=".contains(c)))
                .unwrap_or(word.len());
            let rest = if end == 0 { "" } else { &word[end..] };
            out.push(format!("{MASK}{rest}"));
            after_scheme = false;
            continue;
        }
        after_scheme = lw == "bearer" || lw == "basic" || lw == "token";
        out.push(mask_key_shapes(word));
    }
    out.join(" ")
}

/// Masks every run of token characters that looks like a key, wherever it
/// sits in the word (`OpenAI(api_key="sk-…")`).
fn mask_key_shapes(word: &str) -> String {
    let is_tok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::with_capacity(word.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if looks_like_key(run) {
            out.push_str(MASK);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in word.chars() {
        if is_tok(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Well-known credential shapes: OpenAI/Anthropic `sk-…`, GitHub `ghp_…`,
/// Slack `xox?-…`, AWS access key ids, Google `AIza…`.
fn looks_like_key(w: &str) -> bool {
    let long_tail = |p: &str| {
        w.strip_prefix(p).is_some_and(|t| {
            t.len() >= 16
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    };
    long_tail("sk-")
        || long_tail("ghp_")
        || long_tail("github_pat_")
        || long_tail("xoxb-")
        || long_tail("xoxp-")
        || long_tail("AIza")
        || (w.len() == 20
            && w.starts_with("AKIA")
            && w.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()))
}

/// `s` with what a terminal would act on instead of show escaped: control
/// characters but newline and tab (ESC starts the sequences that move the
/// cursor, clear lines, set colours) and the bidirectional overrides and
/// isolates that reorder text. Printed as `\u{1b}`.
pub fn visible(s: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_terminal_would_act_on_is_shown_escaped() {
        assert_eq!(visible("POST /v1/orders\n\tok"), "POST /v1/orders\n\tok");
        assert!(matches!(visible("plain"), std::borrow::Cow::Borrowed(_)));
        // Clear the line and write over it; hide text; reorder it.
        assert_eq!(
            visible("DELETE /x\x1b[2K\rGET /y"),
            "DELETE /x\\u{1b}[2K\\u{d}GET /y"
        );
        assert_eq!(visible("a\u{202e}b\u{9b}c"), "a\\u{202e}b\\u{9b}c");
    }

    /// Of no known key shape (no `sk-`, `ghp_`, `AKIA`, nothing a shape
    /// rule masks): each test shows the rule it names did the masking.
    const S: &str = "PLANTEDq7Zx93unit";

    fn r(args: &[&str]) -> Vec<String> {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        argv(&v)
    }

    fn clean(out: &[String]) {
        let j = out.join(" ");
        assert!(
            !j.contains("PLANTED") && !j.contains("hunter2"),
            "leak: {j}"
        );
    }

    #[test]
    fn curl_headers_urls_and_user() {
        let out = r(&[
            "curl",
            "-H",
            &format!("Authorization: Bearer {S}"),
            "-H",
            &format!("x-api-key: {S}"),
            "-u",
            "alice:hunter2",
            &format!("https://bob:hunter2@api.example/v1/x?api_key={S}&limit=5"),
        ]);
        clean(&out);
        assert_eq!(
            out,
            [
                "curl",
                "-H",
                "Authorization: <redacted>",
                "-H",
                "x-api-key: <redacted>",
                "-u",
                "alice:<redacted>",
                "https://bob:<redacted>@api.example/v1/x?api_key=<redacted>&limit=5",
            ]
        );
    }

    #[test]
    fn options_env_and_key_shapes() {
        let out = r(&[
            "mytool",
            "--password",
            "hunter2",
            &format!("--api-key={S}"),
            "--token",
            S,
            &format!("OPENAI_API_KEY={S}"),
            "--verbose",
            "-c",
            &format!("client = OpenAI(api_key=\"{S}\")"),
        ]);
        clean(&out);
        // Ordinary options are kept; each secret goes by its option, its
        // variable's name or its keyword argument.
        assert_eq!(
            out,
            [
                "mytool",
                "--password",
                "<redacted>",
                "--api-key=<redacted>",
                "--token",
                "<redacted>",
                "OPENAI_API_KEY=<redacted>",
                "--verbose",
                "-c",
                "client = OpenAI(api_key=\"<redacted>\")",
            ]
        );
    }

    #[test]
    fn key_shapes_are_masked_where_no_name_says_secret() {
        // One of each shape (none a real credential: the tails are not of
        // the real formats, so secret scanners leave them alone).
        let keys = [
            "sk-live-0123456789abcdefghij",
            "ghp_EXAMPLE-not-a-real-token",
            "github_pat_EXAMPLE_not_a_real_one",
            "xoxb-EXAMPLE-not-a-real-token",
            "xoxp-EXAMPLE-not-a-real-token",
            "AIzaEXAMPLE_not_a_real_key",
            "AKIAIOSFODNN7EXAMPLE",
        ];
        for k in keys {
            assert_eq!(
                r(&["deploy", k, "--region", "eu"]),
                ["deploy", "<redacted>", "--region", "eu"],
                "{k}"
            );
        }
        // Too short for its shape, or not quite the shape: kept.
        let near = [
            "sk-learn",
            "sk-0123456789abcde",
            "ghp_short",
            "AKIAIOSFODNN7EXAMPL",
            "AKIAiosfodnn7example",
        ];
        for w in near {
            assert_eq!(r(&["pip", "install", w]), ["pip", "install", w]);
        }
    }

    #[test]
    fn bearer_inside_a_script() {
        let out = r(&[
            "sh",
            "-c",
            &format!("wget --header 'Authorization: Bearer {S}' https://x/"),
        ]);
        clean(&out);
        assert_eq!(
            out[2], "wget --header 'Authorization: Bearer <redacted>' https://x/",
            "the closing quote is kept"
        );
        let out = r(&["sh", "-c", &format!("f Bearer '{S}' Token {S}")]);
        assert_eq!(out[2], "f Bearer <redacted> Token <redacted>");
    }

    #[test]
    fn headers_named_as_secrets_forms_and_shell_scripts() {
        // Issue 19, finding 6: the shapes that passed.
        let out = r(&[
            "sh",
            "-c",
            "curl -H 'x-api-key: k-PLANTED' -H \"Ocp-Apim-Subscription-Key: PLANTED2\" https://api.example.com/v1",
        ]);
        clean(&out);
        assert_eq!(
            out[2],
            "curl -H 'x-api-key: <redacted>' -H \"Ocp-Apim-Subscription-Key: <redacted>\" https://api.example.com/v1"
        );
        for h in ["X-Amz-Security-Token", "PRIVATE-TOKEN", "X-Goog-Signature"] {
            assert!(is_sensitive_header(&h.to_ascii_lowercase()), "{h}");
            assert_eq!(text(&format!("{h}: {S}")), format!("{h}: <redacted>"));
        }
        assert!(!is_sensitive_header("content-type") && !is_sensitive_header("keep-alive"));
        let form = format!("grant_type=password&username=bob&password={S}&client_secret={S}");
        assert_eq!(
            text(&form),
            "grant_type=password&username=bob&password=<redacted>&client_secret=<redacted>"
        );
        // What is not a secret is left as it is.
        for plain in [
            "Content-Type: application/json",
            "a=1&b=2",
            "https://x:443/p",
            "at 12:30",
        ] {
            assert_eq!(text(plain), plain);
        }
    }

    #[test]
    fn secrets_in_code_arguments() {
        let out = r(&[
            "python3",
            "-c",
            "urlopen(Request(u, headers={'x-api-key': 'k-PLANTED', 'Cookie':\"s=hunter2\"}))\nclient = X(api_key='PLANTED2')",
        ]);
        clean(&out);
        // Only the values go: the code around them is shown as it runs.
        assert_eq!(
            out[2],
            "urlopen(Request(u, headers={'x-api-key': '<redacted>', 'Cookie':\"<redacted>\"}))\nclient = X(api_key='<redacted>')"
        );
    }

    #[test]
    fn ordinary_command_lines_are_untouched() {
        let args = [
            "python3",
            "-m",
            "http.server",
            "8080",
            "--bind",
            "127.0.0.1",
            "https://api.openai.com/v1/chat/completions?stream=true",
        ];
        assert_eq!(r(&args), args);
    }
}
