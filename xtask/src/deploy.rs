//! `deploy/` checked offline, with no container engine and no cluster: the
//! Kubernetes manifests against the Kubernetes schemas (kubernetes-validate)
//! and yamllint, their consistency with the sensor's config
//! (`deploy/check.py`), the ConfigMap's sensor.toml with
//! `sensor config check`, and the Dockerfile with hadolint. The image itself
//! is not built here.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::cmd::{root, run};

/// The oldest Kubernetes the manifests are written for (the DaemonSet's
/// `appArmorProfile` field is 1.30+).
pub const KUBERNETES_VERSION: &str = "1.30.0";

pub fn check(sensor: &Path) -> Result<()> {
    let deploy = root().join("deploy");
    let manifest_dir = deploy.join("kubernetes");
    let python = crate::venv::ensure_at(
        "deploy",
        &deploy.join("requirements.txt"),
        &root().join("target/deploy-venv"),
    )?;
    let bin = python.parent().context("the venv's bin directory")?;
    let work = root().join("target/deploy-check");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    run(Command::new(bin.join("yamllint"))
        .arg("--strict")
        .arg("-c")
        .arg(deploy.join("yamllint.yaml"))
        .arg(&manifest_dir))
    .context("yamllint")?;
    let files = manifests(&manifest_dir)?;
    validate(bin, &files)?;
    validator_rejects_broken_manifests(bin, &manifest_dir, &work)?;
    let toml = work.join("sensor.toml");
    run(Command::new(&python)
        .arg(deploy.join("check.py"))
        .arg(&manifest_dir)
        .arg(&toml))
    .context("deploy/check.py")?;
    run(Command::new(sensor).args(["config", "check"]).arg(&toml))
        .context("the ConfigMap's sensor.toml is not a valid sensor config")?;
    run(Command::new(bin.join("hadolint")).arg(deploy.join("Dockerfile")))
        .context("hadolint deploy/Dockerfile")?;
    eprintln!(
        "deploy: {} manifests valid for Kubernetes {KUBERNETES_VERSION}, linted and consistent; \
         Dockerfile linted (the image is not built here: no container engine)",
        files.len()
    );
    Ok(())
}

/// The resource files under `dir`: every YAML file but kustomization.yaml
/// (kustomize's own input, not a Kubernetes object).
fn manifests(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "yaml")
                && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no manifests in {}", dir.display());
    }
    Ok(files)
}

fn validate(bin: &Path, files: &[PathBuf]) -> Result<()> {
    let out = Command::new(bin.join("kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(files)
        .output()
        .context("could not start kubernetes-validate")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    judge(out.status.success(), &text)?;
    eprint!("{text}");
    Ok(())
}

/// kubernetes-validate exits 0 when it has no schema for a kind or
/// apiVersion (a typo such as `apps/v2`), printing a WARN line: anything but
/// `INFO … passed` lines is a failure here.
fn judge(success: bool, text: &str) -> Result<()> {
    let passed = text
        .lines()
        .filter(|l| l.starts_with("INFO ") && l.contains(" passed "))
        .count();
    let other = text
        .lines()
        .any(|l| !l.trim().is_empty() && !l.starts_with("INFO "));
    if !success || other || passed == 0 {
        bail!(
            "kubernetes-validate (Kubernetes {KUBERNETES_VERSION}, strict) rejected the manifests:\n{}",
            text.trim_end()
        );
    }
    Ok(())
}

/// Broken copies of the DaemonSet must fail validation, or a passing check
/// would prove nothing (a validator without schemas, or one that only
/// warns).
fn validator_rejects_broken_manifests(bin: &Path, manifest_dir: &Path, work: &Path) -> Result<()> {
    let good = std::fs::read_to_string(manifest_dir.join("daemonset.yaml"))?;
    for (n, (from, to, what)) in BROKEN.iter().enumerate() {
        if !good.contains(from) {
            bail!("negative check {what:?}: daemonset.yaml no longer contains {from:?}");
        }
        let path = work.join(format!("broken-{n}.yaml"));
        std::fs::write(&path, good.replacen(from, to, 1))?;
        if validate(bin, std::slice::from_ref(&path)).is_ok() {
            bail!(
                "kubernetes-validate accepted a broken manifest ({what}, {}): the check proves nothing",
                path.display()
            );
        }
    }
    eprintln!(
        "deploy: kubernetes-validate rejects broken manifests ({} kinds of damage)",
        BROKEN.len()
    );
    Ok(())
}

/// (text in daemonset.yaml, replacement, what is wrong then).
const BROKEN: &[(&str, &str, &str)] = &[
    (
        "hostPID: true",
        "hostPID: \"yes\"",
        "a string where a boolean goes",
    ),
    (
        "apiVersion: apps/v1",
        "apiVersion: apps/v2",
        "an API version that does not exist",
    ),
    (
        "terminationGracePeriodSeconds:",
        "terminationGracePeriod:",
        "a misspelt field",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::setup::{BPF_LINKER_VERSION, EBPF_TOOLCHAIN, USERSPACE_TOOLCHAIN};

    #[test]
    fn judges_validator_output() {
        let ok = "INFO a.yaml passed for resource daemonset/sensor against version 1.30\n";
        assert!(judge(true, ok).is_ok());
        assert!(judge(false, ok).is_err());
        assert!(judge(true, "").is_err(), "nothing validated");
        let warn = "WARN a.yaml Couldn't find schema for kind DaemonSet with api version apps/v2";
        assert!(judge(true, &format!("{ok}{warn}\n")).is_err());
        let error = "ERROR a.yaml did not validate: spec.template.spec.hostPID: 'yes' is not of type 'boolean'";
        assert!(judge(false, error).is_err());
    }

    #[test]
    fn finds_the_manifests_but_not_the_kustomization() {
        let files = manifests(&root().join("deploy/kubernetes")).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "configmap.yaml",
                "daemonset.yaml",
                "namespace.yaml",
                "rbac.yaml"
            ]
        );
    }

    #[test]
    fn broken_variants_apply_to_the_daemonset() {
        let ds = std::fs::read_to_string(root().join("deploy/kubernetes/daemonset.yaml")).unwrap();
        for (from, _, what) in BROKEN {
            assert!(ds.contains(from), "{what}: {from:?} not in daemonset.yaml");
        }
    }

    #[test]
    fn dockerfile_pins_match_setup() {
        let d = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
        for pin in [
            format!("ARG EBPF_TOOLCHAIN={EBPF_TOOLCHAIN}"),
            format!("ARG BPF_LINKER_VERSION={BPF_LINKER_VERSION}"),
            "--features llvm-22".to_string(),
            "LLVM_PREFIX=/usr/lib/llvm-22".to_string(),
            format!("ARG RUST_TOOLCHAIN={USERSPACE_TOOLCHAIN}"),
            r#"ENTRYPOINT ["/usr/local/bin/sensor"]"#.to_string(),
        ] {
            assert!(d.contains(&pin), "deploy/Dockerfile lacks {pin:?}");
        }
    }
}
