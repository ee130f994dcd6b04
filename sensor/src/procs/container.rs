//! Container identity from a cgroup path.
//!
//! Runtimes name the cgroup of a container after its 64-hex id, with a
//! runtime-specific prefix under systemd and a bare directory under cgroupfs:
//!
//! | runtime / driver      | path (last segments)                                            |
//! |-----------------------|-----------------------------------------------------------------|
//! | docker, cgroupfs      | `/docker/<id>`                                                  |
//! | docker, systemd       | `/system.slice/docker-<id>.scope`                               |
//! | podman                | `…/libpod-<id>.scope` (`libpod-conmon-<id>.scope` is conmon)    |
//! | containerd (k8s), sd  | `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope` |
//! | cri-o (k8s), systemd  | `…/kubepods-pod<uid_>.slice/crio-<id>.scope` (`crio-conmon-` is conmon) |
//! | k8s, cgroupfs         | `/kubepods/besteffort/pod<uid>/<id>`                            |
//! | containerd, nerdctl   | `/default/<id>` (namespace directory)                           |
//!
//! Pod uids come from `pod<uid>` segments; systemd spells them with `_`
//! where the uid has `-`. Only a path under the root `kubepods` cgroup has
//! one: users own the cgroups systemd delegates to them (rootless
//! containers live there), and a process of theirs in a scope they named
//! `cri-containerd-<a pod's container id>.scope` must not pass for that
//! pod's container (issue 19, finding 8). A sensor in its own cgroup
//! namespace sees host paths with leading `..` segments; they are skipped.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerInfo {
    /// The full 64-hex container id.
    pub id: String,
    /// docker, containerd, cri-o, podman, or unknown.
    pub runtime: &'static str,
    /// Kubernetes pod uid when the path is under kubepods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Prefixes of systemd scope names that wrap a container id.
const SCOPE_PREFIXES: [(&str, &str); 5] = [
    ("docker-", "docker"),
    ("cri-containerd-", "containerd"),
    ("crio-", "cri-o"),
    ("libpod-", "podman"),
    ("containerd-", "containerd"),
];

/// Finds the container a cgroup path belongs to; None for host processes
/// and for runtime helpers such as conmon.
pub fn parse(cgroup_path: &str) -> Option<ContainerInfo> {
    let segments: Vec<&str> = cgroup_path
        .split('/')
        .filter(|s| !s.is_empty() && *s != "..")
        .collect();
    let kube = segments.first().is_some_and(|s| s.starts_with("kubepods"));
    let pod_uid = if kube {
        segments.iter().find_map(|s| pod_uid(s))
    } else {
        None
    };
    // The innermost container segment wins (nested cgroups sit below it).
    for (i, seg) in segments.iter().enumerate().rev() {
        let name = seg.strip_suffix(".scope").unwrap_or(seg);
        for (prefix, runtime) in SCOPE_PREFIXES {
            if let Some(rest) = name.strip_prefix(prefix)
                && is_container_id(rest)
            {
                return Some(ContainerInfo {
                    id: rest.to_string(),
                    runtime,
                    pod_uid,
                });
            }
        }
        if is_container_id(name) {
            let parent = if i > 0 { segments[i - 1] } else { "" };
            let runtime = if parent == "docker" {
                "docker"
            } else if kube || parent == "default" || parent == "k8s.io" {
                "containerd"
            } else {
                "unknown"
            };
            return Some(ContainerInfo {
                id: name.to_string(),
                runtime,
                pod_uid,
            });
        }
    }
    None
}

fn pod_uid(segment: &str) -> Option<String> {
    let name = segment.strip_suffix(".slice").unwrap_or(segment);
    // systemd: kubepods-<qos>-pod<uid_>; cgroupfs: pod<uid>
    let uid = name
        .rsplit_once("-pod")
        .map(|(_, u)| u)
        .or_else(|| name.strip_prefix("pod"))?;
    let uid = uid.replace('_', "-");
    let looks_like_uid = uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    looks_like_uid.then_some(uid)
}

/// The cgroup v2 path of a `/proc/PID/cgroup` file: the `0::` line. On hosts
/// with only v1 hierarchies, the first line that names a container.
pub fn v2_path(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
        .or_else(|| {
            proc_cgroup.lines().find_map(|l| {
                let path = l.splitn(3, ':').nth(2)?;
                parse(path).map(|_| path.to_string())
            })
        })
}

/// The container of a process from its whole `/proc/PID/cgroup` file (any
/// hierarchy may carry the id on hybrid v1/v2 hosts).
pub fn from_proc_cgroup(proc_cgroup: &str) -> Option<ContainerInfo> {
    proc_cgroup
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .find_map(parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f3c2e1d0b9a8f7e6d5c4b3a29180716f5e4d3c2b1a09f8e7d6c5b4a39281706";
    const UID: &str = "8e0d6b2a-3c41-4f5e-9a7b-1c2d3e4f5a6b";

    fn check(path: &str, runtime: &str, pod: Option<&str>) {
        let c = parse(path).unwrap_or_else(|| panic!("no container in {path}"));
        assert_eq!(c.id, ID, "{path}");
        assert_eq!(c.runtime, runtime, "{path}");
        assert_eq!(c.pod_uid.as_deref(), pod, "{path}");
    }

    #[test]
    fn docker_cgroupfs_and_systemd() {
        check(&format!("/docker/{ID}"), "docker", None);
        check(&format!("/system.slice/docker-{ID}.scope"), "docker", None);
    }

    #[test]
    fn kubernetes_containerd_systemd() {
        let uid_ = UID.replace('-', "_");
        check(
            &format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{ID}.scope"
            ),
            "containerd",
            Some(UID),
        );
        // Guaranteed QoS has no qos slice.
        check(
            &format!("/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope"),
            "containerd",
            Some(UID),
        );
    }

    #[test]
    fn kubernetes_crio_systemd() {
        let uid_ = UID.replace('-', "_");
        check(
            &format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{ID}.scope"
            ),
            "cri-o",
            Some(UID),
        );
        // conmon is the runtime's monitor, not the container.
        assert_eq!(
            parse(&format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-conmon-{ID}.scope"
            )),
            None
        );
    }

    #[test]
    fn kubernetes_cgroupfs() {
        check(
            &format!("/kubepods/besteffort/pod{UID}/{ID}"),
            "containerd",
            Some(UID),
        );
        check(&format!("/kubepods/pod{UID}/{ID}"), "containerd", Some(UID));
    }

    #[test]
    fn podman_and_nerdctl() {
        check(
            &format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
            ),
            "podman",
            None,
        );
        check(&format!("/default/{ID}"), "containerd", None);
    }

    #[test]
    fn a_pod_is_only_under_the_root_kubepods_cgroup() {
        let uid_ = UID.replace('-', "_");
        // Seen from a sensor in its own cgroup namespace.
        check(
            &format!(
                "/../../kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{ID}.scope"
            ),
            "containerd",
            Some(UID),
        );
        // A user's own delegated cgroups, named like a pod's: a container
        // maybe, never that pod.
        let forged = format!(
            "/user.slice/user-1000.slice/user@1000.service/app.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{ID}.scope"
        );
        let c = parse(&forged).unwrap();
        assert_eq!(c.pod_uid, None, "{c:?}");
    }

    #[test]
    fn host_processes_have_no_container() {
        for p in [
            "/",
            "/init.scope",
            "/system.slice/ssh.service",
            "/user.slice/user-0.slice/session-3.scope",
            "/kubepods.slice/kubepods-besteffort.slice",
            "/system.slice/containerd.service",
        ] {
            assert_eq!(parse(p), None, "{p}");
        }
    }

    #[test]
    fn proc_cgroup_files() {
        let hybrid = format!(
            "12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/system.slice/docker-{ID}.scope\n"
        );
        assert_eq!(
            v2_path(&hybrid).unwrap(),
            format!("/system.slice/docker-{ID}.scope")
        );
        assert_eq!(from_proc_cgroup(&hybrid).unwrap().id, ID);
        let v1_only = format!("4:cpu:/docker/{ID}\n");
        assert_eq!(v2_path(&v1_only).unwrap(), format!("/docker/{ID}"));
        assert_eq!(v2_path("0::/\n").unwrap(), "/");
        assert_eq!(from_proc_cgroup("0::/user.slice\n"), None);
    }
}
