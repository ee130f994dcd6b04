//! `cargo xtask vm-test`: boots Debian's stock 6.1 kernel under QEMU with an
//! initramfs made here (static busybox, the sensor, the end-to-end test
//! executables of the `tests` crate that need no Python, curl, openssl and
//! their shared libraries) and runs those tests in the guest
//! (`xtask/vm/suite.sh` drives them), proving the sensor works on a
//! second, older kernel than the host's, with the attach methods that
//! kernel allows and the host's refuses. The guest prints
//! `VM-TEST PASS|FAIL name` lines, then `VM-TEST DONE`, and powers off.

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    cmd::{self, output, run},
    cpio::Archive,
    setup,
};

/// Host packages the VM test needs, and why.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "boots the guest kernel (vm-test)"),
    (
        "busybox-static",
        "init, shell and tools of the guest (vm-test); static, so no libc to copy",
    ),
    ("curl", "HTTP and HTTPS client in the guest (vm-test)"),
    (
        "openssl",
        "TLS server in the guest and its certificate (vm-test)",
    ),
];

/// The kernel flavour: the cloud build has the drivers a QEMU guest needs
/// built in and boots in about 2.5 s under TCG (the generic one takes ~6 s,
/// probing hardware). `-unsigned` is the same kernel without the Secure Boot
/// signature wrapper.
const KERNEL_PREFIX: &str = "linux-image-6.1.0-";
const KERNEL_SUFFIX: &str = "-cloud-amd64-unsigned";

/// The whole guest run (boot, suite, power-off) must finish within this.
/// The suite takes about 180 s under TCG on 2 shared cores: eight sensor
/// starts of ~15 s each, about half of it the kernel verifying the TLS
/// write programs (~0.28 s each natively); the bound leaves room for a
/// host busy with other builds.
const GUEST_TIMEOUT: Duration = Duration::from_secs(480);

/// Host binaries copied into the guest with their shared libraries.
/// (Debian's busybox has no pgrep: the kill test needs procps's.)
const GUEST_TOOLS: &[&str] = &["/usr/bin/curl", "/usr/bin/openssl", "/usr/bin/pgrep"];

/// The end-to-end tests run in the guest: (test executable of the `tests`
/// crate, test name or "" for all of it). Those that need no Python:
/// connect attribution (curl), the attach methods, TLS capture (curl
/// against openssl s_server), isolation (e2e-puppet) and kill.
const GUEST_TESTS: &[(&str, &str)] = &[
    ("kernel_matrix", ""),
    ("attribution", "curl_connects_are_attributed"),
    ("response", "kill_is_pid_safe_and_takes_the_whole_tree"),
];

/// The methods Debian's 6.1 must get (it allows fentry/fexit and BPF LSM,
/// measured: KERNEL-NOTES.md), passed to the guest's tests, which assert
/// them (and check them against their own probes of the kernel).
/// With fexit avoided (`attach.avoid`) connect must fall to kprobe: 6.1
/// has kprobes.
const GUEST_EXPECT_METHODS: &str = "connect=fexit,isolation=lsm,connect_next=kprobe";

/// Where the host's `kernel_matrix` test leaves `sensor status` (written
/// by `cargo xtask test` before the guest runs), for the summary.
pub const HOST_STATUS: &str = "target/host-status.txt";

const INIT: &str = include_str!("../vm/init");
const SUITE: &str = include_str!("../vm/suite.sh");

pub fn run_vm_test() -> Result<()> {
    let started = Instant::now();
    let mut did = Vec::new();
    setup::apt_ensure(APT_PACKAGES, &mut did)?;
    let dir = cmd::root().join("target/vm");
    fs::create_dir_all(&dir)?;
    let kernel = kernel(&dir)?;
    // Debug, not release: the debug binary is what `cargo xtask test` builds
    // anyway, while a release build costs minutes on these 2 shared cores.
    // Its price in the guest is the start (BTF parsing, loading ~20
    // programs): 6-9 s to "sensor ready" under TCG; the rest is seconds.
    let sensor = cmd::build_sensor(false)?;
    let tests = e2e_executables()?;
    let initrd = initramfs(&dir, &sensor, &tests)?;
    let prep = started.elapsed();
    eprintln!(
        "vm-test: prepared in {:.1} s (kernel {}, initramfs {} MiB)",
        prep.as_secs_f64(),
        kernel.version,
        fs::metadata(&initrd)?.len() >> 20
    );
    let lsm = fs::read_to_string(&kernel.config)
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("CONFIG_LSM=").map(str::to_string))
        })
        .unwrap_or_else(|| "(not set)".into());
    eprintln!("vm-test: kernel config CONFIG_LSM={lsm}");
    let mut result = None;
    if kvm_openable() {
        let o = boot(&dir, &kernel, &initrd, "kvm")?;
        if o.boot.is_some() {
            result = Some(o);
        } else {
            // Here /dev/kvm is a nested kvm-pvm: with `-cpu host` QEMU
            // aborts at once ("failed to set MSR 0x10a"), with other CPU
            // models the stock kernel prints nothing for minutes.
            let why = o.console.iter().rev().find(|l| !l.trim().is_empty());
            eprintln!(
                "vm-test: KVM did not reach init ({}); falling back to TCG",
                why.map_or("no output", String::as_str)
            );
        }
    }
    let result = match result {
        Some(o) => o,
        None => boot(&dir, &kernel, &initrd, "tcg")?,
    };
    result.report(&kernel, prep, started.elapsed())
}

struct Kernel {
    /// Package name, e.g. linux-image-6.1.0-57-cloud-amd64-unsigned.
    package: String,
    /// Debian package version, e.g. 6.1.176-1.
    version: String,
    vmlinuz: PathBuf,
    config: PathBuf,
}

/// Picks the newest `linux-image-6.1.0-N-cloud-amd64-unsigned` apt can
/// fetch (highest ABI number N with a candidate version), downloads and
/// unpacks it once under `target/vm/`; later runs reuse the unpacked tree.
fn kernel(dir: &Path) -> Result<Kernel> {
    let (package, version) = match newest_kernel()? {
        Some(k) => k,
        None => {
            // An apt cache that was never updated knows no kernel packages.
            eprintln!("vm-test: no {KERNEL_PREFIX}N{KERNEL_SUFFIX} known to apt; apt-get update");
            run(Command::new("apt-get").arg("update"))?;
            newest_kernel()?.with_context(|| {
                format!("no {KERNEL_PREFIX}N{KERNEL_SUFFIX} package in the apt sources")
            })?
        }
    };
    let unpacked = dir.join(format!("{package}_{version}"));
    if !unpacked.join("boot").is_dir() {
        eprintln!("vm-test: downloading {package} {version} (once; kept unpacked in target/vm)");
        let debs = dir.join("debs");
        fs::create_dir_all(&debs)?;
        run(Command::new("apt-get")
            .args(["download", &format!("{package}={version}")])
            .current_dir(&debs))?;
        let deb = fs::read_dir(&debs)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{package}_")))
            })
            .with_context(|| format!("apt-get download left no {package}_*.deb"))?;
        let tmp = dir.join("unpacking");
        let _ = fs::remove_dir_all(&tmp);
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
        fs::rename(&tmp, &unpacked)?;
        let _ = fs::remove_file(&deb);
    }
    let boot = unpacked.join("boot");
    let find = |prefix: &str| -> Result<PathBuf> {
        fs::read_dir(&boot)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .with_context(|| format!("no {prefix}* in {}", boot.display()))
    };
    Ok(Kernel {
        vmlinuz: find("vmlinuz-")?,
        config: find("config-")?,
        package,
        version,
    })
}

/// (package, candidate version) of the highest ABI number apt can install.
fn newest_kernel() -> Result<Option<(String, String)>> {
    let names = output(Command::new("apt-cache").args(["pkgnames", KERNEL_PREFIX]))
        .context("apt-cache pkgnames failed")?;
    let mut abis: Vec<(u32, String)> = names
        .lines()
        .filter_map(|n| {
            let abi = n.strip_prefix(KERNEL_PREFIX)?.strip_suffix(KERNEL_SUFFIX)?;
            Some((abi.parse().ok()?, n.to_string()))
        })
        .collect();
    abis.sort_by_key(|a| std::cmp::Reverse(a.0));
    // Old ABIs stay in the package lists as names without a candidate.
    for (_, name) in abis {
        let policy = output(Command::new("apt-cache").args(["policy", &name])).unwrap_or_default();
        let candidate = policy
            .lines()
            .find_map(|l| l.trim().strip_prefix("Candidate: "))
            .map(str::trim);
        if let Some(v) = candidate.filter(|v| *v != "(none)") {
            return Ok(Some((name, v.to_string())));
        }
    }
    Ok(None)
}

/// Writes `target/vm/initramfs.cpio` (newc, uncompressed: the kernel
/// unpacks it faster than it would inflate gzip under TCG).
fn initramfs(dir: &Path, sensor: &Path, tests: &E2e) -> Result<PathBuf> {
    let mut a = Archive::default();
    for d in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "etc/ssl", "proc", "sys", "dev", "tmp",
        "run", "root", "var", "var/lib", "vm", "e2e",
    ] {
        a.dir(d, 0o755);
    }
    // The kernel opens /dev/console for init's stdio before init can mount
    // devtmpfs; without the node init runs with no output at all.
    a.char_dev("dev/console", 0o600, 5, 1);
    a.file("bin/busybox", 0o755, &read("/bin/busybox")?);
    a.symlink("bin/sh", "busybox");
    a.file("init", 0o755, INIT.as_bytes());
    a.file("vm/suite.sh", 0o755, SUITE.as_bytes());
    a.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n");
    a.file("etc/group", 0o644, b"root:x:0:\n");
    let plan: String = GUEST_TESTS
        .iter()
        .map(|(bin, name)| format!("{bin} {name}\n"))
        .collect();
    a.file("vm/tests", 0o644, plan.as_bytes());
    a.file(
        "vm/env",
        0o644,
        format!(
            "SENSOR_E2E_EXPECT_METHODS={GUEST_EXPECT_METHODS}\nSENSOR_E2E_PUPPET={GUEST_PUPPET}\n"
        )
        .as_bytes(),
    );
    // openssl reads its config at start; Debian's default is harmless.
    a.file("etc/ssl/openssl.cnf", 0o644, &read("/etc/ssl/openssl.cnf")?);
    // Where openssl looks for it (OPENSSLDIR): `openssl req` needs it.
    a.dir("usr/lib/ssl", 0o755);
    a.symlink("usr/lib/ssl/openssl.cnf", "/etc/ssl/openssl.cnf");

    // The sensor without its debug info (230 MB → tens of MB): the guest's
    // RAM holds the whole initramfs.
    let stripped = dir.join("sensor");
    strip(sensor, &stripped)?;
    a.file("usr/bin/sensor", 0o755, &read(&stripped)?);

    let mut libs = BTreeSet::new();
    libs.extend(shared_libraries(&stripped)?);
    // The test executables, stripped too, and e2e-puppet beside them (the
    // tests are told where by SENSOR_E2E_PUPPET: the path compiled into
    // them may be under /tmp, which the guest's init covers with a tmpfs).
    for (bin, _) in GUEST_TESTS {
        let path = tests
            .tests
            .iter()
            .find(|(n, _)| n == bin)
            .map(|(_, p)| p)
            .with_context(|| format!("no test executable {bin} in the tests crate"))?;
        let out = dir.join(format!("e2e-{bin}"));
        strip(path, &out)?;
        a.file(&format!("e2e/{bin}"), 0o755, &read(&out)?);
        libs.extend(shared_libraries(&out)?);
    }
    let puppet = dir.join("e2e-puppet");
    strip(&tests.puppet, &puppet)?;
    a.file(GUEST_PUPPET.trim_start_matches('/'), 0o755, &read(&puppet)?);
    libs.extend(shared_libraries(&puppet)?);
    for tool in GUEST_TOOLS {
        a.file(tool.trim_start_matches('/'), 0o755, &read(tool)?);
        libs.extend(shared_libraries(Path::new(tool))?);
    }
    for lib in &libs {
        // Same path as on the host (the loader's search path and the
        // sensor's TLS library scan both expect Debian's multiarch dirs).
        a.file(lib.trim_start_matches('/'), 0o755, &read(lib)?);
    }

    let path = dir.join("initramfs.cpio");
    fs::write(&path, a.finish()).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn strip(from: &Path, to: &Path) -> Result<()> {
    run(Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(to)
        .arg(from))
}

/// Where the guest has e2e-puppet.
const GUEST_PUPPET: &str = "/e2e/e2e-puppet";

/// The `tests` crate's executables: each integration test by target name,
/// and the e2e-puppet binary they drive.
struct E2e {
    tests: Vec<(String, PathBuf)>,
    puppet: PathBuf,
}

/// Builds the `tests` crate's test executables (what `cargo xtask test`
/// builds anyway) and finds them in cargo's JSON messages.
fn e2e_executables() -> Result<E2e> {
    let out = cmd::cargo()
        .args([
            "test",
            "--package",
            "e2e",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cargo test --no-run for the end-to-end tests")?;
    anyhow::ensure!(
        out.status.success(),
        "building the end-to-end tests failed ({})",
        out.status
    );
    let mut tests = Vec::new();
    let mut puppet = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(exe), Some(name)) = (v["executable"].as_str(), v["target"]["name"].as_str())
        else {
            continue;
        };
        let kinds = v["target"]["kind"].to_string();
        if kinds.contains("\"test\"") {
            tests.push((name.to_string(), PathBuf::from(exe)));
        } else if name == "e2e-puppet" && v["profile"]["test"] == false {
            // The binary itself (CARGO_BIN_EXE_e2e-puppet), not its
            // unit-test harness.
            puppet = Some(PathBuf::from(exe));
        }
    }
    Ok(E2e {
        tests,
        puppet: puppet.context("cargo built no e2e-puppet executable")?,
    })
}

fn read(p: impl AsRef<Path>) -> Result<Vec<u8>> {
    let p = p.as_ref();
    fs::read(p).with_context(|| format!("reading {}", p.display()))
}

/// Absolute paths of the shared libraries `bin` loads, the dynamic loader
/// included, as the host's `ldd` resolves them.
fn shared_libraries(bin: &Path) -> Result<Vec<String>> {
    let out = output(Command::new("ldd").arg(bin))
        .with_context(|| format!("ldd {} failed", bin.display()))?;
    Ok(parse_ldd(&out))
}

fn parse_ldd(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x…)"; the vdso has no file.
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.trim(),
                None => l,
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

struct Outcome {
    accel: &'static str,
    console: Vec<String>,
    boot: Option<Duration>,
    suite: Option<Duration>,
    done: bool,
    timed_out: bool,
    exit: Option<std::process::ExitStatus>,
}

fn kvm_openable() -> bool {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Boots the guest once. With KVM, a guest that has not reached init
/// within `KVM_INIT_LIMIT` is given up (the caller falls back to TCG); a
/// TCG boot takes about 4 s to init here.
fn boot(dir: &Path, kernel: &Kernel, initrd: &Path, accel: &'static str) -> Result<Outcome> {
    const KVM_INIT_LIMIT: Duration = Duration::from_secs(15);
    let cpu = if accel == "kvm" { "host" } else { "max" };
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-accel", accel, "-cpu", cpu, "-m", "1024", "-smp", "2"])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        // No LSM list: Debian's CONFIG_LSM already ends in "bpf" (checked
        // and printed below), so the stock command line is what is tested.
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        // No network device: loopback is all the suite uses, and without
        // one SeaBIOS does not spend time loading the iPXE ROM.
        .args(["-nic", "none", "-nographic", "-no-reboot"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!(
        "vm-test: booting {} with -accel {accel}",
        kernel.vmlinuz.display()
    );
    let start = Instant::now();
    let mut child = qemu.spawn().context("starting qemu-system-x86_64")?;
    let (tx, rx) = mpsc::channel::<(String, Instant)>();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stream);
            let mut buf = Vec::new();
            while r.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                if tx.send((line, Instant::now())).is_err() {
                    break;
                }
                buf.clear();
            }
        });
    }
    drop(tx);
    let mut o = Outcome {
        accel,
        console: Vec::new(),
        boot: None,
        suite: None,
        done: false,
        timed_out: false,
        exit: None,
    };
    let mut init_at = None;
    loop {
        let deadline = match (accel, init_at) {
            ("kvm", None) => start + KVM_INIT_LIMIT,
            _ => start + GUEST_TIMEOUT,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((line, at)) => {
                // SeaBIOS and the console's reset leave terminal escapes
                // in front of the first lines init prints: cut them.
                let line = match line.find("VM-TEST ") {
                    Some(i) => line[i..].to_string(),
                    None => line,
                };
                if line.starts_with("VM-TEST INIT") {
                    init_at = Some(at);
                    o.boot = Some(at - start);
                }
                if line.starts_with("VM-TEST DONE") {
                    o.done = true;
                    o.suite = init_at.map(|i| at - i);
                }
                if line.starts_with("VM-TEST") {
                    eprintln!("guest| {line}");
                }
                o.console.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                o.timed_out = init_at.is_some() || accel != "kvm";
                let _ = child.kill();
                break;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    o.exit = child.wait().ok();
    fs::write(dir.join("console.log"), o.console.join("\n") + "\n")?;
    Ok(o)
}

impl Outcome {
    fn report(&self, kernel: &Kernel, prep: Duration, total: Duration) -> Result<()> {
        let tests: Vec<&str> = self
            .console
            .iter()
            .filter(|l| l.starts_with("VM-TEST PASS") || l.starts_with("VM-TEST FAIL"))
            .map(String::as_str)
            .collect();
        let failed = tests
            .iter()
            .filter(|l| l.starts_with("VM-TEST FAIL"))
            .count();
        let status = block(&self.console, "VM-TEST STATUS BEGIN", "VM-TEST STATUS END");
        let info: Vec<&str> = self
            .console
            .iter()
            .filter_map(|l| l.strip_prefix("VM-TEST INFO "))
            .collect();
        let ok = self.done && failed == 0 && !tests.is_empty() && !self.timed_out;
        if !ok {
            eprintln!("---- guest console ----");
            for l in &self.console {
                eprintln!("{l}");
            }
            eprintln!("---- end of guest console ----");
        }
        let secs = |d: Option<Duration>| {
            d.map(|d| format!("{:.1} s", d.as_secs_f64()))
                .unwrap_or_else(|| "n/a".into())
        };
        eprintln!("==== vm-test summary ====");
        eprintln!("kernel:  {} {}", kernel.package, kernel.version);
        for i in &info {
            eprintln!("guest:   {i}");
        }
        if let Some(init) = self.console.iter().find(|l| l.starts_with("VM-TEST INIT")) {
            eprintln!("guest:   {}", init.trim_start_matches("VM-TEST "));
        }
        eprintln!("accel:   {}", self.accel);
        eprintln!(
            "times:   prepare {:.1} s, QEMU start to init {}, suite {}, total {:.1} s",
            prep.as_secs_f64(),
            secs(self.boot),
            secs(self.suite),
            total.as_secs_f64()
        );
        for t in &tests {
            eprintln!("{t}");
        }
        let guest_caps = status
            .iter()
            .find_map(|l| l.strip_prefix("capabilities: "))
            .unwrap_or("(no status)");
        eprintln!("capabilities, guest {}: {guest_caps}", kernel.package);
        let host = fs::read_to_string(cmd::root().join(HOST_STATUS)).ok();
        let host_lines: Vec<String> = host
            .as_deref()
            .unwrap_or("")
            .lines()
            .map(String::from)
            .collect();
        match host_lines
            .iter()
            .find_map(|l| l.strip_prefix("capabilities: "))
        {
            Some(c) => eprintln!("capabilities, host: {c}"),
            None => eprintln!(
                "capabilities, host: not measured in this checkout ({HOST_STATUS} is written by the host's kernel_matrix test in cargo xtask test)"
            ),
        }
        for (who, lines) in [("guest", &status), ("host", &host_lines)] {
            for hook in ["connect", "isolation"] {
                if let Some(l) = method_line(lines, hook) {
                    eprintln!("methods, {who}: {l}");
                }
            }
        }
        if !status.is_empty() {
            eprintln!("sensor status in the guest:");
            for l in &status {
                eprintln!("  {l}");
            }
        }
        if self.timed_out {
            bail!(
                "vm-test: the guest did not finish within {} s (console in target/vm/console.log)",
                GUEST_TIMEOUT.as_secs()
            );
        }
        if !self.done {
            bail!(
                "vm-test: the guest stopped before VM-TEST DONE (qemu {:?}; console in target/vm/console.log)",
                self.exit
            );
        }
        if tests.is_empty() {
            bail!("vm-test: the guest reported no test results");
        }
        if failed > 0 {
            bail!("vm-test: {failed} guest test(s) failed");
        }
        eprintln!("vm-test: all {} guest tests passed", tests.len());
        Ok(())
    }
}

/// The `attach methods:` line of `hook` in a `sensor status` text.
fn method_line(status: &[String], hook: &str) -> Option<String> {
    status
        .iter()
        .map(|l| l.trim())
        .find(|l| l.split_whitespace().next() == Some(hook))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Lines strictly between the `begin` and `end` markers.
fn block(lines: &[String], begin: &str, end: &str) -> Vec<String> {
    lines
        .iter()
        .skip_while(|l| !l.starts_with(begin))
        .skip(1)
        .take_while(|l| !l.starts_with(end))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_loader_and_libraries_not_vdso() {
        let out = "\tlinux-vdso.so.1 (0x00007ff1d0776000)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007ff1ce01e000)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007ff1d0778000)\n";
        assert_eq!(
            parse_ldd(out),
            [
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }

    #[test]
    fn status_block_is_cut_between_markers() {
        let l: Vec<String> = [
            "x",
            "VM-TEST STATUS BEGIN",
            "a",
            "b",
            "VM-TEST STATUS END",
            "y",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            block(&l, "VM-TEST STATUS BEGIN", "VM-TEST STATUS END"),
            ["a", "b"]
        );
    }
}
