use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use sensor::{
    cli::{self, Conn, Filters},
    config::{Config, LogFormat, OutputFormat},
};

/// eBPF host sensor for AI detection and response.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the kernel programs and print one event per line (needs root).
    Run {
        /// Config file (TOML). Default: /etc/sensor/sensor.toml if present.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// JSON lines instead of readable text.
        #[arg(long)]
        json: bool,
        /// State directory (overrides state.dir).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// API unix socket (overrides api.socket).
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// What the running daemon does: attach methods, degraded features,
    /// TLS targets, event rates and drop counters.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Where the TLS functions of executables or libraries are, and how
    /// each was found, as the daemon would attach them (no daemon, no
    /// root needed): why an agent's plaintext is, or is not, seen.
    TlsResolve {
        /// Executables or libraries.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Recent events from the daemon's audit trail; with --follow, then
    /// live events until interrupted.
    Events {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        filters: Filters,
        /// Keep streaming live events.
        #[arg(long, short)]
        follow: bool,
        /// How many recent events to show first.
        #[arg(long, default_value_t = 20)]
        last: u32,
    },
    /// Everything one process or one agent did, in order, from the audit
    /// trail.
    History {
        /// A process id, or an agent (id or name, as `sensor agents` shows).
        who: String,
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        filters: Filters,
        /// Only this far back (e.g. 1h, 30m).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// At most this many events, the most recent ones (0: no limit
        /// beyond the server's).
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// What one agent session did, in order: its model calls and the tool
    /// calls they asked for, the API calls that followed (its tools' too),
    /// findings, holds and actions. The session is the `agent.session` of
    /// its events ("pid-start_ticks" of the agent's root process).
    Trace {
        session: String,
        /// Only this far back (e.g. 1h, 30m).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Whether the daemon answers and serves (the standard gRPC health
    /// check over the API socket); exits 0 only when it is SERVING. Cheap
    /// enough for a Kubernetes exec probe.
    Health {
        /// The service to ask about (empty: the whole daemon).
        #[arg(long, default_value = "")]
        service: String,
        /// Give up after this long (a daemon that accepts but never answers
        /// is not healthy).
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        #[command(flatten)]
        conn: Conn,
    },
    /// Every AI agent identity seen on this host (the shadow-AI inventory).
    Agents {
        #[command(flatten)]
        conn: Conn,
    },
    /// One agent's profile: credentials, endpoints, irreversible calls,
    /// destinations, runs.
    Agent {
        /// Agent id (agt-...) or name.
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// The credential audit: every credential agents held (in their
    /// environment at exec) or used (in their calls), by fingerprint: who
    /// held it, where it came from, who used it for what.
    Credentials {
        /// Only those this agent (id or name) held or used.
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Cuts a process off the network in the kernel: new connections
    /// fail (EPERM), open ones go silent, its future children are cut off
    /// too. Lasts until `sensor release`, across daemon restarts.
    Isolate {
        #[command(flatten)]
        target: cli::Target,
        /// Keep loopback (127.0.0.0/8, ::1) reachable.
        #[arg(long)]
        allow_loopback: bool,
        /// A network that stays reachable, e.g. the SOC collector
        /// (repeatable, at most 4 per family).
        #[arg(long = "allow", value_parser = clap::value_parser!(sensor::respond::isolate::Net))]
        allow: Vec<sensor::respond::isolate::Net>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Undoes `sensor isolate` for a process and the children it forked.
    Release {
        pid: u32,
        /// Why, for the audit trail.
        #[arg(long, default_value = "")]
        why: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Kills a process (SIGKILL through a pidfd, after checking it is still
    /// the same process); `--tree` kills its descendants first.
    Kill {
        #[command(flatten)]
        target: cli::Target,
        #[command(flatten)]
        conn: Conn,
    },
    /// Lists isolated processes: since when, why, by whom.
    Isolated {
        #[command(flatten)]
        conn: Conn,
    },
    /// Lets a held agent's request go on (SIGCONT: exactly that request).
    Approve {
        /// The hold id, from the `held` event or `sensor holds`.
        hold_id: u64,
        /// Also let this same request line through from now on.
        #[arg(long)]
        remember: bool,
        /// Why, for the audit trail.
        #[arg(long, default_value = "")]
        why: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Refuses a held agent's request: kills the process (pid-safe).
    Deny {
        hold_id: u64,
        /// Isolate the process instead (its request then fails).
        #[arg(long)]
        isolate: bool,
        #[arg(long, default_value = "")]
        why: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Lists pending holds, oldest first, with what each was about to do.
    Holds {
        #[command(flatten)]
        conn: Conn,
    },
    /// Baselines: show one, and across nodes export, import, merge.
    Baseline {
        #[command(subcommand)]
        action: BaselineAction,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum BaselineAction {
    /// One agent's baseline as the daemon checks it now: learning or
    /// not, runs, endpoints with counts, transitions, credentials,
    /// destinations.
    Show {
        /// Agent id (agt-...) or name.
        agent: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Writes the running daemon's baselines (learned here and imported)
    /// as a portable file, for other nodes or a ConfigMap.
    Export {
        /// Only these agents (id or name; repeatable).
        #[arg(long = "agent")]
        agents: Vec<String>,
        /// Write here instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Adds a baseline file to the running daemon: the agents it covers
    /// are checked from their next call (kept across restarts).
    Import {
        path: PathBuf,
        #[command(flatten)]
        conn: Conn,
    },
    /// Pins an agent's mode: learn, monitor (findings, actions only
    /// reported), enforce (actions done), or auto (learning, then
    /// response.mode).
    Mode {
        /// Agent id (agt-...) or name.
        agent: String,
        #[arg(value_parser = ["learn", "monitor", "enforce", "auto"])]
        mode: String,
        /// Why, for the mode event.
        #[arg(long, default_value = "")]
        why: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Merges files learned on several nodes into one (no daemon needed).
    Merge {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the default configuration, every key with its default.
    Default,
    /// Validate a config file and exit.
    Check { path: PathBuf },
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => fmt.json().with_ansi(false).init(),
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            config,
            json,
            state_dir,
            socket,
        } => {
            let mut cfg = Config::load(config.as_deref())?;
            if json {
                cfg.output.format = OutputFormat::Json;
            }
            if let Some(d) = state_dir {
                cfg.state.dir = d;
            }
            if let Some(s) = socket {
                cfg.api.socket = s;
            }
            init_logging(&cfg.log.level, cfg.log.format);
            sensor::redact::set_extra_secret_headers(&cfg.http.secret_headers);
            if !nix::unistd::Uid::effective().is_root() {
                anyhow::bail!(
                    "sensor run needs root (CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN): try `sudo sensor run`"
                );
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(sensor::run::run(cfg))
        }
        Command::Status { conn } => client_runtime()?.block_on(cli::status(&conn)),
        Command::TlsResolve { files } => {
            let mut all_ok = true;
            for f in &files {
                let (text, ok) = sensor::tls::resolve::describe(f);
                print!("{text}");
                all_ok &= ok;
            }
            if !all_ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Events {
            conn,
            filters,
            follow,
            last,
        } => client_runtime()?.block_on(cli::events(&conn, &filters, last, follow)),
        Command::History {
            who,
            conn,
            filters,
            since,
            limit,
        } => client_runtime()?.block_on(cli::history(&conn, &who, since, &filters, limit)),
        Command::Health {
            service,
            timeout,
            conn,
        } => client_runtime()?.block_on(cli::health(&conn, &service, timeout)),
        Command::Trace {
            session,
            since,
            conn,
        } => client_runtime()?.block_on(cli::trace(&conn, &session, since)),
        Command::Agents { conn } => client_runtime()?.block_on(cli::agents(&conn)),
        Command::Agent { id, conn } => client_runtime()?.block_on(cli::agent(&conn, &id)),
        Command::Credentials { agent, conn } => {
            client_runtime()?.block_on(cli::credentials(&conn, agent.as_deref()))
        }
        Command::Isolate {
            target,
            allow_loopback,
            allow,
            conn,
        } => client_runtime()?.block_on(cli::isolate(&conn, &target, allow_loopback, &allow)),
        Command::Release { pid, why, conn } => {
            client_runtime()?.block_on(cli::release(&conn, pid, &why))
        }
        Command::Kill { target, conn } => client_runtime()?.block_on(cli::kill(&conn, &target)),
        Command::Isolated { conn } => client_runtime()?.block_on(cli::isolated(&conn)),
        Command::Approve {
            hold_id,
            remember,
            why,
            conn,
        } => client_runtime()?.block_on(cli::decide(&conn, hold_id, true, remember, &why)),
        Command::Deny {
            hold_id,
            isolate,
            why,
            conn,
        } => client_runtime()?.block_on(cli::decide(&conn, hold_id, false, isolate, &why)),
        Command::Holds { conn } => client_runtime()?.block_on(cli::holds(&conn)),
        Command::Baseline { action } => match action {
            BaselineAction::Show { agent, conn } => {
                client_runtime()?.block_on(cli::show_baseline(&conn, &agent))
            }
            BaselineAction::Export {
                agents,
                output,
                conn,
            } => {
                client_runtime()?.block_on(cli::export_baselines(&conn, &agents, output.as_deref()))
            }
            BaselineAction::Import { path, conn } => {
                client_runtime()?.block_on(cli::import_baselines(&conn, &path))
            }
            BaselineAction::Mode {
                agent,
                mode,
                why,
                conn,
            } => client_runtime()?.block_on(cli::set_mode(&conn, &agent, &mode, &why)),
            BaselineAction::Merge { paths, output } => {
                cli::merge_baselines(&paths, output.as_deref())
            }
        },
        Command::Config { action } => {
            match action {
                ConfigAction::Default => print!("{}", Config::default().to_toml()),
                ConfigAction::Check { path } => {
                    Config::load(Some(&path))?;
                    println!("{}: ok", path.display());
                }
            }
            Ok(())
        }
    }
}

fn client_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
