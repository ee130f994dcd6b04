//! Endpoint templates: ids in paths collapse to `{id}` and query values are
//! dropped (keys kept, sorted), so `/v1/orders/8812?limit=5` and
//! `/v1/orders/8813?limit=9` are one endpoint, and no query value (which
//! may be a secret) reaches a template.

pub fn path_template(target: &str) -> String {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let path = path.split('#').next().unwrap_or(path);
    let segments: Vec<String> = path
        .split('/')
        .map(|seg| {
            if is_id(seg) {
                "{id}".to_string()
            } else {
                seg.to_string()
            }
        })
        .collect();
    let mut out = segments.join("/");
    if let Some(q) = query {
        let mut keys: Vec<&str> = q
            .split('&')
            .filter_map(|kv| kv.split('=').next())
            .filter(|k| !k.is_empty())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        if !keys.is_empty() {
            out.push('?');
            out.push_str(&keys.join("&"));
        }
    }
    out
}

fn is_id(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    // Gemini style `models/gemini-1.5-pro:generateContent`: keep verbs.
    let seg = seg.split(':').next().unwrap_or(seg);
    let digits = seg.bytes().filter(u8::is_ascii_digit).count();
    let all_digits = digits == seg.len();
    let hex = seg.bytes().all(|b| b.is_ascii_hexdigit());
    let uuid = seg.len() == 36
        && seg.bytes().enumerate().all(|(i, b)| {
            if [8, 13, 18, 23].contains(&i) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        });
    // Prefixed ids: cus_NffrFeUfNV2Hib, ch_3MmlLrLkdIwHu7ix0snN0B15.
    let prefixed = seg.split_once('_').is_some_and(|(p, rest)| {
        p.len() <= 8
            && p.bytes().all(|b| b.is_ascii_lowercase())
            && rest.len() >= 10
            && rest.bytes().all(|b| b.is_ascii_alphanumeric())
            && rest
                .bytes()
                .any(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    });
    // Long opaque tokens mixing letters and digits.
    let token = seg.len() >= 16
        && digits > 0
        && seg.bytes().any(|b| b.is_ascii_alphabetic())
        && seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    all_digits || uuid || (hex && seg.len() >= 8 && digits > 0) || prefixed || token
}

#[cfg(test)]
mod tests {
    use super::path_template as t;

    #[test]
    fn ids_collapse() {
        assert_eq!(t("/v1/orders/8812"), "/v1/orders/{id}");
        assert_eq!(t("/v1/orders/8813/items/2"), "/v1/orders/{id}/items/{id}");
        assert_eq!(
            t("/api/users/3f2b8c1e-9d4a-4e5f-8a7b-1c2d3e4f5a6b"),
            "/api/users/{id}"
        );
        assert_eq!(t("/v1/customers/cus_NffrFeUfNV2Hib"), "/v1/customers/{id}");
        assert_eq!(
            t("/v1/charges/ch_3MmlLrLkdIwHu7ix0snN0B15"),
            "/v1/charges/{id}"
        );
        assert_eq!(
            t("/repos/x/y/commits/9fceb02d0ae598e95dc970b74767f19372d61af8"),
            "/repos/x/y/commits/{id}"
        );
        assert_eq!(t("/files/file-abc123DEF456ghi789"), "/files/{id}");
    }

    #[test]
    fn words_stay() {
        for p in [
            "/v1/chat/completions",
            "/v1/messages",
            "/v1/models/gpt-4o",
            "/v1beta/models/gemini-1.5-pro:generateContent",
            "/api/generate",
            "/v2/billing/credits",
            "/model/anthropic.claude-3-sonnet-20240229-v1:0/invoke",
        ] {
            assert_eq!(t(p), p, "{p}");
        }
    }

    #[test]
    fn query_values_are_dropped() {
        assert_eq!(
            t("/v1/orders/8812?limit=5&a=1&a=2"),
            "/v1/orders/{id}?a&limit"
        );
        assert_eq!(t("/x?api_key=sk-live-secret"), "/x?api_key");
        assert_eq!(t("/x?"), "/x");
        assert_eq!(t(""), "");
    }
}
