//! LLM provider endpoints: a call to one of them makes its process an
//! agent. Matched on authority and path when the plaintext is seen, on the
//! TLS server name alone when it is not.

/// One provider: host suffixes (empty: any host) and path markers (a
/// prefix, or a `:suffix` for Gemini-style method paths).
pub struct Provider {
    pub name: &'static str,
    hosts: &'static [&'static str],
    paths: &'static [&'static str],
}

const OPENAI_PATHS: &[&str] = &[
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/completions",
];

/// Built-in catalogue, most specific first: hosted providers by host, then
/// local OpenAI-compatible and Ollama servers by path on any host.
pub const PROVIDERS: &[Provider] = &[
    Provider {
        name: "openai",
        hosts: &["api.openai.com"],
        paths: OPENAI_PATHS,
    },
    Provider {
        name: "azure-openai",
        hosts: &[".openai.azure.com", ".cognitiveservices.azure.com"],
        paths: &["/openai/deployments/", "/openai/v1/", "/openai/responses"],
    },
    Provider {
        name: "anthropic",
        hosts: &["api.anthropic.com"],
        paths: &["/v1/messages", "/v1/complete"],
    },
    Provider {
        name: "gemini",
        hosts: &[
            "generativelanguage.googleapis.com",
            "-aiplatform.googleapis.com",
            "aiplatform.googleapis.com",
        ],
        paths: &[
            ":generateContent",
            ":streamGenerateContent",
            ":embedContent",
            "/chat/completions",
        ],
    },
    Provider {
        name: "bedrock",
        hosts: &[".amazonaws.com"],
        paths: &["/model/"],
    },
    Provider {
        name: "mistral",
        hosts: &["api.mistral.ai"],
        paths: OPENAI_PATHS,
    },
    Provider {
        name: "cohere",
        hosts: &["api.cohere.com", "api.cohere.ai"],
        paths: &[
            "/v1/chat",
            "/v2/chat",
            "/v1/embed",
            "/v2/embed",
            "/compatibility/v1/",
        ],
    },
    Provider {
        name: "groq",
        hosts: &["api.groq.com"],
        paths: &["/openai/v1/"],
    },
    Provider {
        name: "together",
        hosts: &["api.together.xyz", "api.together.ai"],
        paths: OPENAI_PATHS,
    },
    Provider {
        name: "openrouter",
        hosts: &["openrouter.ai"],
        paths: &["/api/v1/"],
    },
    Provider {
        name: "deepseek",
        hosts: &["api.deepseek.com"],
        paths: &["/chat/completions", "/v1/chat/completions", "/completions"],
    },
    Provider {
        name: "xai",
        hosts: &["api.x.ai"],
        paths: OPENAI_PATHS,
    },
    Provider {
        name: "ollama",
        hosts: &[],
        paths: &["/api/chat", "/api/generate", "/api/embed"],
    },
    Provider {
        name: "openai-compatible",
        hosts: &[],
        paths: &["/v1/chat/completions", "/v1/completions", "/v1/responses"],
    },
    // Anthropic's Messages API on any host: Claude Code pointed at a
    // gateway or reached by IP (no SNI to name the provider).
    Provider {
        name: "anthropic-compatible",
        hosts: &[],
        paths: &["/v1/messages"],
    },
    // Gemini's method paths on any host: Gemini CLI pointed at a gateway
    // (GOOGLE_GEMINI_BASE_URL) or reached by IP.
    Provider {
        name: "gemini-compatible",
        hosts: &[],
        paths: &[":generateContent", ":streamGenerateContent"],
    },
];

pub fn host_of(authority: &str) -> &str {
    // "[::1]:8080", "host:443", "host"
    let a = authority.trim();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    a.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(a, |(h, _)| h)
}

fn host_matches(host: &str, pattern: &str) -> bool {
    if pattern.starts_with('.') || pattern.starts_with('-') {
        host.ends_with(pattern)
    } else {
        // The host itself or a subdomain, without allocating: this runs for
        // every provider on every request.
        host.strip_suffix(pattern)
            .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
    }
}

fn path_matches(path: &str, marker: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    if marker.starts_with(':') {
        path.contains(marker)
    } else {
        path.starts_with(marker)
    }
}

impl Provider {
    fn hosted_at(&self, host: &str) -> bool {
        self.hosts.iter().any(|p| host_matches(host, p))
    }
}

/// Providers the operator added (`[[agents.providers]]`), checked before
/// the built-in ones. Set once at start.
static EXTRA: std::sync::OnceLock<Vec<Provider>> = std::sync::OnceLock::new();

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

/// Adds the operator's providers (once per process: the config is read
/// once; a second call is ignored).
pub fn install(extra: &[crate::config::ProviderConfig]) {
    if extra.is_empty() {
        return;
    }
    // Leaked once at start: the catalogue lives as long as the daemon, and
    // events name providers by &'static str.
    let list = extra
        .iter()
        .map(|p| Provider {
            name: leak(&p.name),
            hosts: Box::leak(
                p.hosts
                    .iter()
                    .map(|h| leak(&h.to_ascii_lowercase()))
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            ),
            paths: Box::leak(
                p.paths
                    .iter()
                    .map(|x| leak(x))
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            ),
        })
        .collect();
    let _ = EXTRA.set(list);
}

fn all() -> impl Iterator<Item = &'static Provider> {
    EXTRA
        .get()
        .map(|v| v.as_slice())
        .unwrap_or_default()
        .iter()
        .chain(PROVIDERS)
}

/// The provider an HTTP call went to, if any.
pub fn match_call(authority: &str, path: &str) -> Option<&'static str> {
    let host = host_of(authority);
    let lower;
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        lower = host.to_ascii_lowercase();
        lower.as_str()
    } else {
        host
    };
    all()
        .find(|p| {
            (p.hosts.is_empty() || p.hosted_at(host))
                && p.paths.iter().any(|m| path_matches(path, m))
        })
        .map(|p| p.name)
}

/// The hosted provider a TLS server name belongs to (clients whose
/// plaintext is not visible, e.g. Go or rustls).
pub fn match_sni(sni: &str) -> Option<&'static str> {
    let host = sni.trim_end_matches('.').to_ascii_lowercase();
    all()
        // Bare cloud domains (amazonaws.com) name far more than LLMs.
        .filter(|p| p.name != "bedrock" || host.starts_with("bedrock-runtime."))
        .find(|p| !p.hosts.is_empty() && p.hosted_at(&host))
        .map(|p| p.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosted_providers_by_host_and_path() {
        assert_eq!(
            match_call("api.openai.com", "/v1/chat/completions"),
            Some("openai")
        );
        assert_eq!(
            match_call("api.openai.com:443", "/v1/responses?x=1"),
            Some("openai")
        );
        assert_eq!(
            match_call("api.anthropic.com", "/v1/messages"),
            Some("anthropic")
        );
        assert_eq!(
            match_call(
                "generativelanguage.googleapis.com",
                "/v1beta/models/gemini-2.0-flash:generateContent"
            ),
            Some("gemini")
        );
        assert_eq!(
            match_call(
                "myres.openai.azure.com",
                "/openai/deployments/gpt4o/chat/completions"
            ),
            Some("azure-openai")
        );
        assert_eq!(
            match_call(
                "bedrock-runtime.us-east-1.amazonaws.com",
                "/model/anthropic.claude/invoke"
            ),
            Some("bedrock")
        );
        assert_eq!(
            match_call("api.groq.com", "/openai/v1/chat/completions"),
            Some("groq")
        );
        // Not an LLM call: the provider's other endpoints, or other APIs.
        assert_eq!(match_call("api.openai.com", "/v1/files"), None);
        assert_eq!(match_call("vendor.example", "/v1/orders"), None);
    }

    #[test]
    fn local_servers_by_path_on_any_host() {
        assert_eq!(match_call("127.0.0.1:11434", "/api/chat"), Some("ollama"));
        assert_eq!(
            match_call("localhost:8000", "/v1/chat/completions"),
            Some("openai-compatible")
        );
        assert_eq!(
            match_call("[::1]:8000", "/v1/messages"),
            Some("anthropic-compatible")
        );
        assert_eq!(
            match_call("127.0.0.1:8443", "/v1/messages?beta=true"),
            Some("anthropic-compatible")
        );
        assert_eq!(
            match_call(
                "10.0.0.7:8080",
                "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
            ),
            Some("gemini-compatible")
        );
        assert_eq!(match_call("10.0.0.7:8080", "/v1beta/models"), None);
    }

    #[test]
    fn server_names_alone() {
        assert_eq!(match_sni("api.openai.com"), Some("openai"));
        assert_eq!(match_sni("api.anthropic.com."), Some("anthropic"));
        assert_eq!(
            match_sni("bedrock-runtime.eu-west-1.amazonaws.com"),
            Some("bedrock")
        );
        assert_eq!(match_sni("s3.amazonaws.com"), None);
        assert_eq!(match_sni("localhost"), None);
        assert_eq!(match_sni("evil-api.openai.com.attacker.example"), None);
    }
}
