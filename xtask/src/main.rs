//! Project automation. `cargo xtask run` and `cargo xtask test` set up a
//! fresh machine themselves (see `setup`), then build and run or test.

mod bench;
mod bench_agents;
mod bench_claude;
mod bench_db;
mod bench_https;
mod bench_response;
mod bpf_progs;
mod check_agents;
mod cmd;
mod cpio;
mod deploy;
mod fuzz;
mod npm;
mod setup;
mod test;
mod venv;
mod vm;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, run, test and benchmark the sensor")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what is missing (apt packages, toolchains, bpf-linker, tracefs).
    Setup,
    /// Set up, build (release) and start `sensor run` as root; extra
    /// arguments go to `sensor run` (e.g. `cargo xtask run -- --json`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then fmt, clippy, unit tests and the end-to-end tests.
    Test {
        /// Skip the end-to-end tests (they load kernel programs as root).
        #[arg(long)]
        no_e2e: bool,
        /// Skip the end-to-end suite on Debian's 6.1 kernel under QEMU.
        #[arg(long)]
        no_vm: bool,
    },
    /// Only the offline checks of deploy/ (Kubernetes manifests against
    /// the schemas, yamllint, the ConfigMap's config, hadolint); also part
    /// of `test`.
    CheckDeploy,
    /// Run every fuzz target (records, ClientHello, HTTP/1.1, HTTP/2, held
    /// requests, PostgreSQL, MySQL, WebSocket) for a bounded
    /// time; installs cargo-fuzz if needed. `test` runs each for 30 s.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target (records, client_hello, http1, http2, held_request,
        /// postgres, mysql, websocket).
        #[arg(long)]
        only: Option<String>,
    },
    /// Set up, then measure overheads with the sensor off and on, side by side.
    Bench {
        /// Seconds per measurement window.
        #[arg(long, default_value_t = 2)]
        seconds: u64,
        /// Off/on round pairs; medians are reported. Many short rounds:
        /// this VM's speed drifts by a quarter within seconds.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// Only one part: connect, https, response, claude, agents or db.
        #[arg(long)]
        only: Option<String>,
    },
    /// Boot Debian's stock 6.1 kernel under QEMU (TCG) and run the sensor's
    /// guest suite there; installs QEMU, busybox and the kernel if missing.
    VmTest,
    /// Download the newest releases of Claude Code and Codex from npm and
    /// print, per version, whether each TLS function resolved and how.
    /// Not part of CI.
    CheckAgents {
        /// How many of the newest versions of each.
        #[arg(long, default_value_t = 2)]
        versions: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Setup => setup::ensure(),
        Command::Run { args } => {
            setup::ensure()?;
            let bin = cmd::build_sensor(true)?;
            cmd::exec_sensor(&bin, &args)
        }
        Command::Test { no_e2e, no_vm } => {
            test::check_can_run(!no_e2e, !no_vm)?;
            setup::ensure()?;
            test::run_all(!no_e2e, !no_vm)
        }
        Command::CheckDeploy => {
            setup::ensure()?;
            let bin = cmd::build_sensor(false)?;
            deploy::check(&bin)
        }
        Command::Fuzz { seconds, only } => {
            setup::ensure()?;
            fuzz::run_all(seconds, only.as_deref())
        }
        Command::Bench {
            seconds,
            rounds,
            only,
        } => {
            setup::ensure()?;
            bench::run(seconds, rounds, only.as_deref())
        }
        Command::VmTest => {
            setup::ensure()?;
            vm::run_vm_test()
        }
        Command::CheckAgents { versions } => {
            setup::ensure()?;
            check_agents::run_check(versions)
        }
    }
}
