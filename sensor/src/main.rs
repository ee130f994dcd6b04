use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use sensor::config::{Config, OutputFormat};

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
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the default configuration, every key with its default.
    Default,
    /// Validate a config file and exit.
    Check { path: PathBuf },
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, json } => {
            let mut cfg = Config::load(config.as_deref())?;
            if json {
                cfg.output.format = OutputFormat::Json;
            }
            init_logging(&cfg.log.level);
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
