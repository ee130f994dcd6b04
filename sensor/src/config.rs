//! Daemon configuration: a TOML file whose every key has a default.
//!
//! Unknown keys and bad values are startup errors that name the key, e.g.
//! `config /etc/sensor/sensor.toml: ringbuf.bytes: must be a power of two`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where `sensor run` looks when `--config` is not given; absent is fine.
pub const DEFAULT_PATH: &str = "/etc/sensor/sensor.toml";

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub ringbuf: RingbufConfig,
    pub output: OutputConfig,
    pub procs: ProcsConfig,
    pub tls: TlsConfig,
    pub sockets: SocketsConfig,
    pub state: StateConfig,
    pub log: LogConfig,
    pub api: ApiConfig,
    pub audit: AuditConfig,
    pub http: HttpConfig,
    pub response: ResponseConfig,
    pub baselines: BaselinesConfig,
    pub kubernetes: KubernetesConfig,
    pub export: ExportConfig,
    pub metrics: MetricsConfig,
    pub attach: AttachConfig,
    pub agents: AgentsConfig,
}

/// Which processes are agents beyond the built-in provider catalogue, how
/// long an agent identity learns, and how far from its baseline a call may
/// go before it is a finding.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentsConfig {
    /// An identity learns during its first this many runs...
    pub learn_sessions: u64,
    /// ... or, when set (> 0), until this many minutes after it was first
    /// seen, whichever ends first. Then it is in `response.mode` (or its
    /// `response.agents` entry) unless an operator or the policy set one.
    pub learn_minutes: u64,
    /// A window's calls (or bytes) above this many times the learned
    /// runs' high percentile is a runaway (a volume spike).
    pub rate_multiplier: f64,
    /// Calls in 60 s never flagged as a runaway rate, whatever was learned.
    pub rate_floor: u64,
    /// Bytes sent in 60 s never flagged as a volume spike.
    pub volume_floor_bytes: u64,
    /// Writes to one endpoint within 60 s that make a repetition loop.
    pub repeat_limit: u64,
    /// A credential used in more runs than this is `long_lived_credential`
    /// (not scoped to a task)...
    pub credential_max_sessions: u64,
    /// ... or used over more days than this since its first use.
    pub credential_max_days: u64,
    /// Agent identities discovered at most (those named by `selectors`
    /// not counted): each keeps an inventory entry and a baseline, so a
    /// local process inventing names would otherwise grow the daemon
    /// without bound. Past it, a new identity's calls are still reported,
    /// without an agent, and counted (`agent_identities_refused`).
    pub max_identities: u64,
    /// LLM providers besides the built-in catalogue.
    pub providers: Vec<ProviderConfig>,
    /// Processes that are agents whatever they call.
    pub selectors: Vec<SelectorConfig>,
    /// YAML policy file: allowed and denied endpoints, quotas, irreversible
    /// patterns and responses per agent (see README, Policy).
    pub policy: Option<PathBuf>,
}

impl Default for AgentsConfig {
    fn default() -> Self {
        Self {
            learn_sessions: 3,
            learn_minutes: 0,
            rate_multiplier: 3.0,
            rate_floor: 10,
            volume_floor_bytes: 64 * 1024,
            repeat_limit: 5,
            credential_max_sessions: 50,
            credential_max_days: 30,
            max_identities: 4096,
            providers: Vec::new(),
            selectors: Vec::new(),
            policy: None,
        }
    }
}

/// An LLM provider the catalogue does not know (an internal gateway).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    /// Host names (a leading "." matches subdomains too); empty: any host
    /// with one of `paths`.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Path prefixes of model calls (or ":action" markers found anywhere
    /// in the path, as Gemini's ":generateContent").
    pub paths: Vec<String>,
}

/// A process that is an agent by what it is: every field given must match.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SelectorConfig {
    /// The agent's readable name (default: derived from the process).
    pub name: Option<String>,
    /// Glob on the executable's path ("/opt/agents/*").
    pub exe: Option<String>,
    /// Regular expression on the command line, arguments joined by spaces.
    pub cmdline: Option<String>,
    /// Glob on the container id (or "*": any container).
    pub container: Option<String>,
    /// Glob on the cgroup path ("/system.slice/agent-*.service").
    pub cgroup: Option<String>,
    pub uid: Option<u32>,
}

/// The Prometheus `/metrics` endpoint.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    /// Address and port of the HTTP listener (port 0: any free one, logged).
    pub listen: std::net::SocketAddr,
    /// Allow a `listen` address beyond loopback. The endpoint has no
    /// authentication: what it shows (event rates, agents' findings by
    /// rule) is for this host's monitoring, or a network policy's care.
    pub allow_remote: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9464)),
            allow_remote: false,
        }
    }
}

/// How hooks are attached (the methods and their order: `attach::HOOKS`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AttachConfig {
    /// Methods not to use even where the kernel allows them, as
    /// "hook:method" (e.g. "connect:fexit", "isolation:lsm"): the next
    /// method in the table is used instead, and status says why.
    pub avoid: Vec<String>,
}

/// Where events go besides stdout, the audit store and the API: the SOC's
/// pipeline (OTLP) and log shippers (a JSON lines file).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    pub otlp: OtlpConfig,
    pub file: FileExportConfig,
}

/// How OTLP records travel.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (the collector's port 4317).
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with binary protobuf bodies, POSTed to the endpoint's
    /// `/v1/logs` (the collector's port 4318).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// Compression of export requests.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OtlpCompression {
    #[default]
    None,
    Gzip,
}

/// OTLP log export (gRPC or HTTP), e.g. to an OpenTelemetry Collector.
#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// `http://host:4317` (plaintext) or `https://host:4317` (TLS); for
    /// `http/protobuf`, `http://host:4318` (records go to its
    /// `/v1/logs`, unless the URL already names a path).
    /// Unset: no OTLP export.
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf`.
    pub protocol: OtlpProtocol,
    /// `none` or `gzip`.
    pub compression: OtlpCompression,
    /// Request metadata sent with every export (e.g. an authorization
    /// header the collector wants). Never logged.
    pub headers: std::collections::BTreeMap<String, String>,
    /// Log records per export request.
    pub batch_size: usize,
    /// A partial batch is sent once its first record is this old.
    pub batch_timeout_ms: u64,
    /// Records waiting for export; beyond this new ones are dropped and
    /// counted, so a slow or absent collector never slows the pipeline.
    pub queue_capacity: usize,
    /// Per export request (connect included).
    pub timeout_secs: u64,
    /// Tries per batch (retryable failures, with exponential backoff)
    /// before the batch is given up and counted.
    pub max_attempts: u32,
    /// For `https://` endpoints: a private CA and a client certificate.
    /// Without `ca`, the host's trust store is used.
    pub tls: Option<OtlpTlsConfig>,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            protocol: OtlpProtocol::Grpc,
            compression: OtlpCompression::None,
            headers: Default::default(),
            batch_size: 512,
            batch_timeout_ms: 1000,
            queue_capacity: 8192,
            timeout_secs: 10,
            max_attempts: 5,
            tls: None,
        }
    }
}

// By hand: the headers usually hold a collector's credential, and a
// derived Debug would print it wherever a config is logged.
impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("compression", &self.compression)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("batch_size", &self.batch_size)
            .field("batch_timeout_ms", &self.batch_timeout_ms)
            .field("queue_capacity", &self.queue_capacity)
            .field("timeout_secs", &self.timeout_secs)
            .field("max_attempts", &self.max_attempts)
            .field("tls", &self.tls)
            .finish()
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpTlsConfig {
    /// CA (PEM) the collector's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// Client certificate chain and key (PEM), for collectors that want
    /// mutual TLS; both or neither.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Name to check the collector's certificate against, when it is not
    /// the endpoint's host.
    pub domain: Option<String>,
}

/// JSON lines (the `--json` form) appended to a file, rotated by size.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileExportConfig {
    /// Unset: no file export. Relative paths are under `state.dir`.
    pub path: Option<PathBuf>,
    /// The file is rotated (`path.1`, …) before it would grow past this.
    pub max_bytes: u64,
    /// Rotated files kept (`path.1` newest … `path.N`); 0: none.
    pub keep: u32,
}

impl Default for FileExportConfig {
    fn default() -> Self {
        Self {
            path: None,
            max_bytes: 100 << 20,
            keep: 5,
        }
    }
}

/// Pod metadata from the Kubernetes API server.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// false: never look for pods.
    pub enabled: bool,
    /// The API server URL; empty: from the in-cluster environment
    /// (KUBERNETES_SERVICE_HOST/PORT) when the sensor runs in a pod,
    /// otherwise no pod metadata.
    pub api_server: String,
    /// The service account token (re-read at each refresh).
    pub token_file: PathBuf,
    /// The cluster CA the API server's certificate is checked against.
    pub ca_file: PathBuf,
    /// This node's name; empty: $NODE_NAME (the downward API), else the
    /// host name.
    pub node_name: String,
    /// How often this node's pods are listed.
    pub refresh_secs: u64,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            api_server: String::new(),
            token_file: "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
            ca_file: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt".into(),
            node_name: String::new(),
            refresh_secs: 30,
        }
    }
}

impl KubernetesConfig {
    /// Where to list pods from, if anywhere.
    pub fn source(&self) -> Option<crate::pods::Source> {
        if !self.enabled {
            return None;
        }
        let api_server = if self.api_server.is_empty() {
            let host = std::env::var("KUBERNETES_SERVICE_HOST").ok()?;
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            if host.contains(':') {
                format!("https://[{host}]:{port}")
            } else {
                format!("https://{host}:{port}")
            }
        } else {
            self.api_server.clone()
        };
        let node = if self.node_name.is_empty() {
            std::env::var("NODE_NAME")
                .ok()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| {
                    nix::unistd::gethostname()
                        .map(|h| h.to_string_lossy().into_owned())
                        .unwrap_or_default()
                })
        } else {
            self.node_name.clone()
        };
        Some(crate::pods::Source {
            api_server,
            token_file: self.token_file.clone(),
            ca_file: self.ca_file.clone(),
            node,
            refresh: std::time::Duration::from_secs(self.refresh_secs.max(1)),
        })
    }
}

/// Baselines learned elsewhere (other nodes, an earlier export).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BaselinesConfig {
    /// `sensor baseline export` files read at start (e.g. mounted from a
    /// ConfigMap): the agents they cover are checked from their first run
    /// on this node instead of learning from scratch.
    pub import: Vec<PathBuf>,
}

/// What the sensor does about findings, and what it never touches.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseConfig {
    /// `monitor`: actions the policy calls for are reported, not done (a
    /// dry run); `enforce`: they are done.
    pub mode: ResponseMode,
    /// Per agent (name or id) mode, overriding `mode`.
    pub agents: std::collections::BTreeMap<String, ResponseMode>,
    /// Findings → actions; the first rule that matches decides.
    pub rules: Vec<ResponseRule>,
    /// Automatic actions per minute for each agent identity and user: a
    /// flood of findings cannot turn into a flood of kills, and one user's
    /// agents cannot spend the budget another's runaway needs.
    pub max_actions_per_minute: u32,
    /// Never killed, isolated or held, besides the sensor itself, init and
    /// kernel threads: executables by absolute path (that file), by file
    /// name (an executable of that name only root could have installed),
    /// or `cgroup:/PATH` (see respond/protect.rs). Never by process name,
    /// which any process sets for itself.
    pub protect: Vec<String>,
    /// Armed agents: their processes are killed in the kernel at the first
    /// TLS write of a request matching a deny pattern, before it leaves.
    pub arm: Vec<ArmConfig>,
    /// Agents held for approval: their processes are stopped in the kernel
    /// at the first TLS write of a request matching a hold pattern, until
    /// a person approves or denies it.
    pub hold: Vec<HoldConfig>,
    /// How long a hold waits for a decision before `hold_expiry` decides.
    pub hold_timeout_secs: u64,
    /// What an unanswered hold becomes: `deny` (kill) or `approve`.
    pub hold_expiry: HoldExpiry,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HoldConfig {
    /// Agent name (as `sensor agents` shows it) or id.
    pub agent: String,
    /// "METHOD [host]/path-prefix", e.g. "POST vendor.example/v1/orders",
    /// "DELETE */customers/" (HTTP/1.x requests), or a statement pattern,
    /// "DROP *", "DROP /DROP TABLE staging_*" (counts twice); with deny
    /// patterns and remembered approvals, at most 8 per agent, 64 bytes
    /// each.
    pub patterns: Vec<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HoldExpiry {
    Deny,
    Approve,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArmConfig {
    /// Agent name (as `sensor agents` shows it) or id.
    pub agent: String,
    /// "METHOD /path-prefix", e.g. "POST /v1/orders" (HTTP/1.x requests),
    /// or a statement pattern, "DROP *" (counts twice); at most 8 per
    /// agent, 64 bytes each.
    pub deny: Vec<String>,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        Self {
            mode: ResponseMode::Monitor,
            agents: Default::default(),
            rules: vec![ResponseRule {
                rule: "*".into(),
                min_severity: Severity::Critical,
                agent: "*".into(),
                action: ResponseAction::IsolateTree,
            }],
            max_actions_per_minute: 10,
            protect: Vec::new(),
            arm: Vec::new(),
            hold: Vec::new(),
            hold_timeout_secs: 300,
            hold_expiry: HoldExpiry::Deny,
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    Monitor,
    Enforce,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "low" => Self::Low,
            "medium" => Self::Medium,
            "high" => Self::High,
            "critical" => Self::Critical,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ResponseAction {
    Alert,
    Isolate,
    IsolateTree,
    Kill,
    KillTree,
}

impl ResponseAction {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "alert" => Self::Alert,
            "isolate" => Self::Isolate,
            "isolate_tree" => Self::IsolateTree,
            "kill" => Self::Kill,
            "kill_tree" => Self::KillTree,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Isolate => "isolate",
            Self::IsolateTree => "isolate_tree",
            Self::Kill => "kill",
            Self::KillTree => "kill_tree",
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResponseRule {
    /// Finding rule name (`repetition`, `new_irreversible_endpoint`, …) or `*`.
    #[serde(default = "any")]
    pub rule: String,
    #[serde(default = "lowest")]
    pub min_severity: Severity,
    /// Agent name or id, or `*`.
    #[serde(default = "any")]
    pub agent: String,
    pub action: ResponseAction,
}

fn any() -> String {
    "*".into()
}

fn lowest() -> Severity {
    Severity::Low
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// gRPC on a unix socket (mode 0600, root): the CLI and node-local
    /// tools. Empty: no local API.
    pub socket: PathBuf,
    /// Events a subscriber may fall behind by before it is told it lagged
    /// (and misses them): a slow reader never slows the pipeline.
    pub subscriber_queue: usize,
    /// Optional TCP listener for remote collectors; mutual TLS only.
    pub tcp: Option<TcpApiConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/sensor/sensor.sock"),
            subscriber_queue: 4096,
            tcp: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TcpApiConfig {
    /// Address and port, e.g. "0.0.0.0:9443".
    pub listen: std::net::SocketAddr,
    /// Server certificate chain and key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA (PEM) that client certificates must chain to: without a valid
    /// client certificate nothing is served.
    pub client_ca: PathBuf,
    /// Serve the control RPCs (isolate, release, kill, hold decisions,
    /// baseline import) to every client of `client_ca`. Off: only to the
    /// clients named in `control_clients`; remote collectors read.
    #[serde(default)]
    pub allow_control: bool,
    /// Client certificates allowed the control RPCs: an entry matches the
    /// certificate's subject common name (CN, exactly) or one of its
    /// subject alternative DNS names (case-insensitive).
    #[serde(default)]
    pub control_clients: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub enabled: bool,
    /// SQLite file; relative paths are under `state.dir`.
    pub path: PathBuf,
    /// Events older than this are deleted (humantime: "7d", "12h").
    #[serde(with = "duration_text")]
    pub max_age: std::time::Duration,
    /// Oldest events are deleted while the store is larger.
    pub max_bytes: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: PathBuf::from("audit.db"),
            max_age: std::time::Duration::from_secs(7 * 24 * 3600),
            max_bytes: 1 << 30,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Headers whose values are credentials, besides the built-in ones
    /// (authorization, x-api-key, cookie, ...): fingerprinted, never shown.
    pub secret_headers: Vec<String>,
    /// The 32-byte key credential fingerprints are made with. Unset: one
    /// made for this host in `state.dir`. Set it to the same file (a
    /// Secret) on every node whose baselines are merged, or the same
    /// credential shows as a different fingerprint on each.
    pub fingerprint_key: Option<PathBuf>,
}

impl ExportConfig {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let o = &self.otlp;
        if let Some(endpoint) = &o.endpoint {
            let tls = match endpoint.parse::<tonic::transport::Uri>() {
                Ok(u) if u.host().is_some_and(|h| !h.is_empty()) => match u.scheme_str() {
                    Some("http") => false,
                    Some("https") => true,
                    _ => {
                        return Err((
                            "export.otlp.endpoint",
                            format!("{endpoint:?} must start with http:// or https://"),
                        ));
                    }
                },
                _ => {
                    return Err((
                        "export.otlp.endpoint",
                        format!("{endpoint:?} is not a URL such as http://127.0.0.1:4317"),
                    ));
                }
            };
            if !tls && o.tls.is_some() {
                return Err((
                    "export.otlp.tls",
                    "is set but the endpoint is http:// (use https:// for TLS)".into(),
                ));
            }
        }
        if let Some(t) = &o.tls
            && t.cert.is_some() != t.key.is_some()
        {
            return Err((
                "export.otlp.tls",
                "cert and key go together (a client certificate needs its key)".into(),
            ));
        }
        for (k, v) in &o.headers {
            if tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(k.as_bytes())
                .is_err()
                || k.ends_with("-bin")
                || k.starts_with(':')
            {
                return Err((
                    "export.otlp.headers",
                    format!("{k:?} is not a header name (lowercase letters, digits, - _ .)"),
                ));
            }
            // The value itself is never repeated: it is usually a credential.
            if !v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)) {
                return Err((
                    "export.otlp.headers",
                    format!("the value of {k:?} is not printable ASCII"),
                ));
            }
        }
        if o.batch_size == 0 || o.batch_size > 10_000 {
            return Err((
                "export.otlp.batch_size",
                format!("{} must be between 1 and 10000", o.batch_size),
            ));
        }
        if o.batch_timeout_ms == 0 || o.batch_timeout_ms > 60_000 {
            return Err((
                "export.otlp.batch_timeout_ms",
                format!("{} must be between 1 and 60000", o.batch_timeout_ms),
            ));
        }
        if o.queue_capacity < o.batch_size {
            return Err((
                "export.otlp.queue_capacity",
                format!(
                    "{} must be at least export.otlp.batch_size ({})",
                    o.queue_capacity, o.batch_size
                ),
            ));
        }
        if o.timeout_secs == 0 || o.timeout_secs > 300 {
            return Err((
                "export.otlp.timeout_secs",
                format!("{} must be between 1 and 300", o.timeout_secs),
            ));
        }
        if o.max_attempts == 0 || o.max_attempts > 20 {
            return Err((
                "export.otlp.max_attempts",
                format!("{} must be between 1 and 20", o.max_attempts),
            ));
        }
        let f = &self.file;
        if f.path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err((
                "export.file.path",
                "is empty (leave it out for no file)".into(),
            ));
        }
        if f.max_bytes < 4096 {
            return Err((
                "export.file.max_bytes",
                format!("{} is too small (at least 4096)", f.max_bytes),
            ));
        }
        if f.keep > 1000 {
            return Err(("export.file.keep", format!("{} is more than 1000", f.keep)));
        }
        Ok(())
    }
}

/// Durations as humantime text ("7d", "90s") in the config file.
mod duration_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Where the sensor keeps what must outlive it (the host's credential
    /// fingerprint key, later baselines and the audit trail).
    pub dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/sensor"),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SocketsConfig {
    /// Capture bytes of connected sockets: the first send (a TLS
    /// ClientHello names SNI/ALPN), and both directions of plain-text HTTP
    /// connections for their whole life. Also ties TLS calls to their
    /// socket. Hooks write/sendto/writev/sendmsg/sendmmsg, read/recvfrom
    /// and close.
    pub enabled: bool,
    /// Bytes copied per captured send or receive.
    pub capture_bytes: u32,
    /// Sends captured of a connection that is neither TLS nor HTTP (its
    /// first send decides).
    pub capture_sends: u32,
}

impl Default for SocketsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            capture_bytes: 2048,
            capture_sends: 2,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Capture TLS plaintext with uprobes on OpenSSL and GnuTLS.
    pub enabled: bool,
    /// Plaintext bytes copied per TLS call (the rest is counted, with its
    /// true length). Enough for a request line and headers of LLM SDKs.
    pub capture_bytes: u32,
    /// Plaintext bytes copied per record where TLS is hooked at its
    /// record cipher (rustls on aws-lc: Codex), at most 16384, a whole
    /// record. A compressed WebSocket (permessage-deflate, Codex's first
    /// transport) shares one window across its messages: one byte not
    /// copied and the rest of that direction cannot be read.
    pub record_capture_bytes: u32,
    /// Globs of executable or library paths (as their processes see them)
    /// whose TLS is not probed: a busy gateway or proxy on the node that
    /// is no agent pays nothing. `sensor status` lists them as skipped.
    pub skip: Vec<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            capture_bytes: 4096,
            record_capture_bytes: sensor_common::TLS_DATA_MAX as u32,
            skip: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RingbufConfig {
    /// Size of the kernel ring buffer in bytes: a power of two, at least one page.
    pub bytes: u32,
    /// Wake the reader once this many bytes are pending (0: every record).
    pub wakeup_bytes: u64,
    /// The reader also drains on this interval, bounding the delay of
    /// records that did not trigger a wakeup.
    pub poll_interval_ms: u64,
    /// Decoded records queued between the reader and the pipeline; beyond
    /// this the reader drops (and counts) rather than stall the kernel side.
    pub queue_capacity: usize,
    /// Records of agents in `enforce` mode wake the reader at once rather
    /// than wait for the batch (`respond/urgent.rs`): off, they wait like
    /// any other (one wakeup fewer per record, a slower response).
    pub urgent_wakeups: bool,
}

impl Default for RingbufConfig {
    fn default() -> Self {
        Self {
            bytes: sensor_common::DEFAULT_RINGBUF_BYTES,
            wakeup_bytes: 64 * 1024,
            poll_interval_ms: 5,
            queue_capacity: 16384,
            urgent_wakeups: true,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    pub format: OutputFormat,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProcsConfig {
    /// Exited processes stay in the table this long so that late events
    /// (a connect read after its process ended) are still attributed.
    pub exited_retention_secs: u64,
    /// Upper bound on the table; the oldest exited entries go first.
    pub max_entries: usize,
    /// Root of procfs (a DaemonSet mounts the host's /proc elsewhere).
    pub proc_root: PathBuf,
    /// Environment variables read as held credentials at each exec,
    /// besides the secret-named ones (`*_API_KEY`, `*_TOKEN`,
    /// `*PASSWORD*`, `DATABASE_URL`, …): exact names, or prefixes ending
    /// in `*`. Their values are fingerprinted, never kept.
    pub secret_env: Vec<String>,
}

impl Default for ProcsConfig {
    fn default() -> Self {
        Self {
            exited_retention_secs: 30,
            max_entries: 131_072,
            proc_root: PathBuf::from("/proc"),
            secret_env: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter (`info`, `sensor=debug`, …); `RUST_LOG` overrides it.
    pub level: String,
    /// `text` (readable, `key=value` fields) or `json` (one object per
    /// line, for log collectors).
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl Config {
    /// Loads `path`, or the defaults when `path` is None and the default
    /// file does not exist.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Parses and validates; `path` only labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        let de = toml::Deserializer::parse(text)
            .map_err(|e| invalid("(syntax)".into(), e.message().to_string()))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            invalid(
                if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                inner.message().to_string(),
            )
        })?;
        config.validate().map_err(|(k, m)| invalid(k.into(), m))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        let page = 4096u32;
        let b = self.ringbuf.bytes;
        if !b.is_power_of_two() || b < page {
            return Err((
                "ringbuf.bytes",
                format!("{b} must be a power of two and at least {page} (one page)"),
            ));
        }
        if self.ringbuf.wakeup_bytes >= u64::from(b) {
            return Err((
                "ringbuf.wakeup_bytes",
                format!(
                    "{} must be smaller than ringbuf.bytes ({b}), or the reader would only wake when records are already being dropped",
                    self.ringbuf.wakeup_bytes
                ),
            ));
        }
        if self.ringbuf.poll_interval_ms == 0 || self.ringbuf.poll_interval_ms > 10_000 {
            return Err((
                "ringbuf.poll_interval_ms",
                format!(
                    "{} must be between 1 and 10000",
                    self.ringbuf.poll_interval_ms
                ),
            ));
        }
        if self.ringbuf.queue_capacity == 0 {
            return Err(("ringbuf.queue_capacity", "must be at least 1".into()));
        }
        if self.procs.max_entries < 1024 {
            return Err((
                "procs.max_entries",
                format!("{} is too small (at least 1024)", self.procs.max_entries),
            ));
        }
        let max = sensor_common::TLS_DATA_MAX as u32;
        if !(64..=max).contains(&self.tls.capture_bytes) {
            return Err((
                "tls.capture_bytes",
                format!("{} must be between 64 and {max}", self.tls.capture_bytes),
            ));
        }
        if !(64..=max).contains(&self.tls.record_capture_bytes) {
            return Err((
                "tls.record_capture_bytes",
                format!(
                    "{} must be between 64 and {max}",
                    self.tls.record_capture_bytes
                ),
            ));
        }
        if let Err(e) = crate::tls::Skip::new(&self.tls.skip) {
            return Err(("tls.skip", e));
        }
        let max = sensor_common::SOCK_DATA_MAX as u32;
        if !(64..=max).contains(&self.sockets.capture_bytes) {
            return Err((
                "sockets.capture_bytes",
                format!(
                    "{} must be between 64 and {max}",
                    self.sockets.capture_bytes
                ),
            ));
        }
        if let Err(e) = crate::respond::protect::Protect::new(&self.response.protect) {
            return Err(("response.protect", e));
        }
        if self.response.max_actions_per_minute == 0 {
            return Err((
                "response.max_actions_per_minute",
                "must be at least 1 (use mode = \"monitor\" to act on nothing)".into(),
            ));
        }
        for a in &self.response.arm {
            if let Err(e) = crate::respond::arm::rules(&a.deny) {
                return Err(("response.arm", format!("agent {:?}: {e}", a.agent)));
            }
        }
        for h in &self.response.hold {
            if let Err(e) = crate::respond::arm::hold_rules(&h.patterns) {
                return Err(("response.hold", format!("agent {:?}: {e}", h.agent)));
            }
        }
        if self.response.hold_timeout_secs == 0 {
            return Err(("response.hold_timeout_secs", "must be at least 1".into()));
        }
        if self.sockets.capture_sends > 64 {
            return Err((
                "sockets.capture_sends",
                format!("{} is more than 64", self.sockets.capture_sends),
            ));
        }
        if self.api.subscriber_queue == 0 {
            return Err(("api.subscriber_queue", "must be at least 1".into()));
        }
        if let Some(t) = &self.api.tcp {
            if t.allow_control && !t.control_clients.is_empty() {
                return Err((
                    "api.tcp.control_clients",
                    "is set together with allow_control = true, which already lets every client of client_ca act: keep one".into(),
                ));
            }
            if let Some(c) = t
                .control_clients
                .iter()
                .find(|c| c.trim().is_empty() || c.trim() != c.as_str())
            {
                return Err((
                    "api.tcp.control_clients",
                    format!(
                        "{c:?} is not a certificate name (a CN or DNS name, without spaces around it)"
                    ),
                ));
            }
        }
        let m = &self.metrics;
        if m.enabled && !m.listen.ip().is_loopback() && !m.allow_remote {
            return Err((
                "metrics.listen",
                format!(
                    "{} is not a loopback address and /metrics has no authentication: set metrics.allow_remote = true to serve it beyond this host",
                    m.listen
                ),
            ));
        }
        if let Some(h) = self
            .http
            .secret_headers
            .iter()
            .find(|h| h.is_empty() || !h.bytes().all(|b| b.is_ascii_graphic() && b != b':'))
        {
            return Err(("http.secret_headers", format!("{h:?} is not a header name")));
        }
        let a = &self.agents;
        if a.max_identities == 0 {
            return Err((
                "agents.max_identities",
                "is 0: no agent could ever be discovered".into(),
            ));
        }
        if a.learn_sessions == 0 && a.learn_minutes == 0 {
            return Err((
                "agents.learn_sessions",
                "is 0 and learn_minutes is 0: an agent would be checked against a baseline it never learned (pin a mode in the policy to skip learning)".into(),
            ));
        }
        if !(a.rate_multiplier.is_finite() && a.rate_multiplier >= 1.0) {
            return Err((
                "agents.rate_multiplier",
                format!("{} must be a number of at least 1", a.rate_multiplier),
            ));
        }
        if a.repeat_limit < 2 {
            return Err(("agents.repeat_limit", "must be at least 2".into()));
        }
        for p in &a.providers {
            if p.name.trim().is_empty() || p.paths.is_empty() {
                return Err((
                    "agents.providers",
                    format!(
                        "{:?}: a provider needs a name and at least one path",
                        p.name
                    ),
                ));
            }
        }
        for sel in &a.selectors {
            if let Err(e) = crate::agents::selectors::Selector::new(sel) {
                return Err(("agents.selectors", e));
            }
        }
        if let Some(p) = &a.policy
            && let Err(e) = crate::agents::policy::Policy::load(p)
        {
            return Err(("agents.policy", e));
        }
        for a in &self.attach.avoid {
            let known = a.split_once(':').is_some_and(|(h, m)| {
                crate::attach::HOOKS
                    .iter()
                    .any(|hook| hook.name == h && hook.methods.iter().any(|x| x.name == m))
            });
            if !known {
                let all: Vec<String> = crate::attach::HOOKS
                    .iter()
                    .flat_map(|h| h.methods.iter().map(|m| format!("{}:{}", h.name, m.name)))
                    .collect();
                return Err((
                    "attach.avoid",
                    format!("{a:?} is not a hook:method (one of {})", all.join(", ")),
                ));
            }
        }
        if let Some(h) = crate::attach::HOOKS.iter().find(|h| {
            h.required
                && h.methods.iter().all(|m| {
                    self.attach
                        .avoid
                        .contains(&format!("{}:{}", h.name, m.name))
                })
        }) {
            return Err((
                "attach.avoid",
                format!("avoids every method of {}, which the sensor needs", h.name),
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(("log.level", format!("{:?}: {e}", self.log.level)));
        }
        self.export.validate()
    }

    /// The configuration as TOML, for `sensor config default`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s, Path::new("t.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = Config::default().to_toml();
        assert_eq!(parse(&text).unwrap(), Config::default());
    }

    #[test]
    fn values_are_read() {
        let c = parse("[ringbuf]\nbytes = 8192\nwakeup_bytes = 0\n[output]\nformat = \"json\"\n")
            .unwrap();
        assert_eq!(c.ringbuf.bytes, 8192);
        assert_eq!(c.ringbuf.wakeup_bytes, 0);
        assert_eq!(c.output.format, OutputFormat::Json);
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = parse("[ringbuf]\nbytes = \"big\"\n").unwrap_err();
        assert!(e.contains("ringbuf.bytes"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("[ringbuf]\nbites = 4096\n").unwrap_err();
        assert!(e.contains("bites"), "{e}");
        let e = parse("[nonsense]\n").unwrap_err();
        assert!(e.contains("nonsense"), "{e}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let e = parse("[ringbuf]\nbytes = 5000\n").unwrap_err();
        assert!(
            e.contains("ringbuf.bytes") && e.contains("power of two"),
            "{e}"
        );
        let e = parse("[output]\nformat = \"xml\"\n").unwrap_err();
        assert!(e.contains("output.format"), "{e}");
        let e = parse("[agents]\nmax_identities = 0\n").unwrap_err();
        assert!(e.contains("agents.max_identities"), "{e}");
        let e = parse("[log]\nlevel = \"[[[\"\n").unwrap_err();
        assert!(e.contains("log.level"), "{e}");
        let e = parse("[log]\nformat = \"xml\"\n").unwrap_err();
        assert!(e.contains("log.format"), "{e}");
        assert_eq!(
            parse("[log]\nformat = \"json\"\n").unwrap().log.format,
            LogFormat::Json
        );
    }

    #[test]
    fn avoided_attach_methods_must_exist_and_leave_the_required_ones() {
        let c = parse("[attach]\navoid = [\"connect:fexit\", \"isolation:lsm\"]\n").unwrap();
        assert_eq!(c.attach.avoid, ["connect:fexit", "isolation:lsm"]);
        let e = parse("[attach]\navoid = [\"connect:fentry\"]\n").unwrap_err();
        assert!(
            e.contains("attach.avoid") && e.contains("connect:fexit"),
            "{e}"
        );
        let e = parse("[attach]\navoid = [\"exec_exit:tracepoint\"]\n").unwrap_err();
        assert!(e.contains("every method of exec_exit"), "{e}");
    }

    #[test]
    fn syntax_error_is_reported() {
        let e = parse("[ringbuf\n").unwrap_err();
        assert!(e.contains("t.toml"), "{e}");
    }

    #[test]
    fn export_settings_are_read() {
        let c = parse(
            "[export.otlp]\nendpoint = \"https://collector:4317\"\nbatch_size = 100\n\
             headers = { authorization = \"Bearer x\" }\n[export.otlp.tls]\nca = \"/etc/ca.pem\"\n\
             [export.file]\npath = \"events.jsonl\"\nkeep = 2\n",
        )
        .unwrap();
        assert_eq!(
            c.export.otlp.endpoint.as_deref(),
            Some("https://collector:4317")
        );
        assert_eq!(c.export.otlp.batch_size, 100);
        assert_eq!(c.export.otlp.headers["authorization"], "Bearer x");
        assert_eq!(
            c.export.otlp.tls.unwrap().ca.unwrap(),
            PathBuf::from("/etc/ca.pem")
        );
        assert_eq!(c.export.file.keep, 2);
        assert_eq!(c.export.file.max_bytes, 100 << 20);
        // Off unless asked for.
        let d = Config::default();
        assert!(d.export.otlp.endpoint.is_none() && d.export.file.path.is_none());
    }

    #[test]
    fn bad_export_settings_name_the_key() {
        for (text, key, words) in [
            (
                "[export.otlp]\nendpoint = \"collector:4317\"\n",
                "export.otlp.endpoint",
                "http",
            ),
            (
                "[export.otlp]\nendpoint = \"ftp://c:21\"\n",
                "export.otlp.endpoint",
                "http",
            ),
            (
                "[export.otlp]\nendpoint = \"http://c:4317\"\n[export.otlp.tls]\nca = \"/ca\"\n",
                "export.otlp.tls",
                "https://",
            ),
            (
                "[export.otlp]\nendpoint = \"https://c:4317\"\n[export.otlp.tls]\ncert = \"/c\"\n",
                "export.otlp.tls",
                "key",
            ),
            (
                "[export.otlp]\nheaders = { \"Bad Name\" = \"v\" }\n",
                "export.otlp.headers",
                "header name",
            ),
            (
                "[export.otlp]\nbatch_size = 0\n",
                "export.otlp.batch_size",
                "between",
            ),
            (
                "[export.otlp]\nqueue_capacity = 10\n",
                "export.otlp.queue_capacity",
                "batch_size",
            ),
            (
                "[export.otlp]\ntimeout_secs = 0\n",
                "export.otlp.timeout_secs",
                "between",
            ),
            (
                "[export.otlp]\nmax_attempts = 0\n",
                "export.otlp.max_attempts",
                "between",
            ),
            (
                "[export.otlp]\nendpont = \"http://c:1\"\n",
                "endpont",
                "unknown",
            ),
            (
                "[export.file]\nmax_bytes = 10\n",
                "export.file.max_bytes",
                "too small",
            ),
            ("[export.file]\npath = \"\"\n", "export.file.path", "empty"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key) && e.contains(words), "{text}: {e}");
        }
    }

    #[test]
    fn header_values_never_appear_in_errors_or_debug() {
        let e = parse("[export.otlp]\nheaders = { authorization = \"Bearer s3cr\u{e9}t\" }\n")
            .unwrap_err();
        assert!(
            e.contains("export.otlp.headers") && !e.contains("s3cr"),
            "{e}"
        );
        let c = parse("[export.otlp]\nheaders = { authorization = \"Bearer s3cret\" }\n").unwrap();
        let dbg = format!("{c:?}");
        assert!(
            dbg.contains("authorization") && !dbg.contains("s3cret"),
            "{dbg}"
        );
    }

    #[test]
    fn metrics_stay_on_loopback_unless_allowed() {
        let d = Config::default().metrics;
        assert!(d.enabled && d.listen.ip().is_loopback(), "{d:?}");
        let e = parse("[metrics]\nlisten = \"0.0.0.0:9464\"\n").unwrap_err();
        assert!(
            e.contains("metrics.listen") && e.contains("allow_remote"),
            "{e}"
        );
        let c = parse("[metrics]\nlisten = \"0.0.0.0:9464\"\nallow_remote = true\n").unwrap();
        assert_eq!(c.metrics.listen.port(), 9464);
        let c = parse("[metrics]\nlisten = \"[::1]:0\"\n").unwrap();
        assert!(c.metrics.listen.ip().is_loopback());
        let e = parse("[metrics]\nlisten = \"localhost\"\n").unwrap_err();
        assert!(e.contains("metrics.listen"), "{e}");
        // Off: any address is accepted, none is used.
        parse("[metrics]\nenabled = false\nlisten = \"0.0.0.0:1\"\n").unwrap();
    }

    #[test]
    fn control_clients_are_names_and_exclude_allow_control() {
        let tcp = "[api.tcp]\nlisten = \"127.0.0.1:9443\"\ncert = \"c\"\nkey = \"k\"\nclient_ca = \"ca\"\n";
        let c = parse(&format!("{tcp}control_clients = [\"responder\"]\n")).unwrap();
        assert_eq!(c.api.tcp.unwrap().control_clients, ["responder"]);
        let e = parse(&format!(
            "{tcp}allow_control = true\ncontrol_clients = [\"responder\"]\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("api.tcp.control_clients") && e.contains("allow_control"),
            "{e}"
        );
        let e = parse(&format!("{tcp}control_clients = [\" x\"]\n")).unwrap_err();
        assert!(e.contains("api.tcp.control_clients"), "{e}");
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let e = Config::load(Some(Path::new("/nonexistent/sensor.toml"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/sensor.toml"));
    }

    #[test]
    fn tls_skip_globs_are_checked() {
        let ok =
            Config::parse("[tls]\nskip = [\"/opt/gateway/*\"]\n", Path::new("t.toml")).unwrap();
        assert_eq!(ok.tls.skip, ["/opt/gateway/*"]);
        let err = Config::parse("[tls]\nskip = [\"/opt/[gateway\"]\n", Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tls.skip") && err.contains("/opt/[gateway"),
            "{err}"
        );
    }
}
