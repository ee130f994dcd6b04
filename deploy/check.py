"""Cross-checks of deploy/kubernetes that a schema cannot make.

Run by `cargo xtask test` (xtask/src/deploy.rs) with the deploy venv's
python, after kubernetes-validate: the ConfigMap's sensor.toml is written
to OUT (for `sensor config check`), and the DaemonSet must mount what that
config points at, the way the README says. Exits non-zero naming every
problem found.

usage: check.py MANIFEST_DIR OUT_TOML
"""

import pathlib
import sys
import tomllib

import yaml


def load(manifest_dir):
    docs = []
    for path in sorted(pathlib.Path(manifest_dir).glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def check(objs, problems):
    def need(cond, what):
        if not cond:
            problems.append(what)

    cm = objs.get(("ConfigMap", "sensor"))
    ds = objs.get(("DaemonSet", "sensor"))
    need(cm is not None, "no ConfigMap named sensor")
    need(ds is not None, "no DaemonSet named sensor")
    if cm is None or ds is None:
        return None
    toml_text = cm["data"]["sensor.toml"]
    cfg = tomllib.loads(toml_text)
    state_dir = cfg.get("state", {}).get("dir", "/var/lib/sensor")
    socket = cfg.get("api", {}).get("socket", "/run/sensor/sensor.sock")
    socket_dir = str(pathlib.PurePosixPath(socket).parent)

    namespace = ds["metadata"]["namespace"]
    for (kind, name), obj in objs.items():
        ns = obj["metadata"].get("namespace")
        if kind not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            need(ns == namespace, f"{kind}/{name} is in {ns!r}, not {namespace!r}")

    spec = ds["spec"]
    pod = spec["template"]["spec"]
    need(pod.get("hostPID") is True, "the DaemonSet must set hostPID: true")
    need(
        spec["selector"]["matchLabels"].items()
        <= spec["template"]["metadata"]["labels"].items(),
        "the DaemonSet's selector does not match its pod labels",
    )
    ru = spec.get("updateStrategy", {}).get("rollingUpdate", {})
    need(ru.get("maxUnavailable") == 1, "rolling update must have maxUnavailable: 1")
    need(
        any(t.get("operator") == "Exists" and "key" not in t for t in pod.get("tolerations", [])),
        "the pods must tolerate every taint (operator: Exists)",
    )
    sa = objs.get(("ServiceAccount", pod.get("serviceAccountName", "default")))
    need(sa is not None, "the pods' ServiceAccount is not in the manifests")

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    containers = {c["name"]: c for c in pod["containers"]}
    sensor = containers.get("sensor")
    need(sensor is not None, "no container named sensor")
    if sensor is None:
        return toml_text
    for c in pod.get("initContainers", []) + pod["containers"]:
        for m in c.get("volumeMounts", []):
            need(m["name"] in volumes, f"{c['name']} mounts undefined volume {m['name']}")
            if m.get("mountPropagation") == "Bidirectional":
                need(
                    c.get("securityContext", {}).get("privileged") is True,
                    f"{c['name']}: Bidirectional propagation needs privileged",
                )

    mounts = {m["mountPath"]: m for m in sensor.get("volumeMounts", [])}

    def host_path(mount_path):
        m = mounts.get(mount_path)
        if m is None:
            return None
        return volumes.get(m["name"], {}).get("hostPath", {}).get("path")

    for path in ["/sys/fs/bpf", "/sys/kernel/btf", "/sys/kernel/tracing", "/sys/fs/cgroup"]:
        need(host_path(path) == path, f"sensor must mount the node's {path} at {path}")
    need(
        host_path(state_dir) == state_dir,
        f"state.dir {state_dir} is not the node's {state_dir} (state must outlive the pod)",
    )
    need(
        host_path(socket_dir) == socket_dir,
        f"the API socket's directory {socket_dir} is not the node's {socket_dir}",
    )
    config_mount = next(
        (m for m in sensor.get("volumeMounts", []) if volumes.get(m["name"], {}).get("configMap")),
        None,
    )
    need(config_mount is not None, "the ConfigMap is not mounted in the sensor container")
    if config_mount is not None:
        path = f"{config_mount['mountPath']}/sensor.toml"
        need(path in sensor.get("args", []), f"sensor is not run with --config {path}")
    caps = set(sensor.get("securityContext", {}).get("capabilities", {}).get("add", []))
    for cap in ["BPF", "PERFMON", "SYS_ADMIN", "NET_ADMIN", "SYS_RESOURCE", "KILL"]:
        need(cap in caps, f"sensor lacks CAP_{cap}")
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"]:
        cmd = sensor.get(probe, {}).get("exec", {}).get("command", [])
        need(cmd[:2] == ["sensor", "health"], f"{probe} must run `sensor health`")
        need(
            "--socket" not in cmd or socket in cmd,
            f"{probe} asks another socket than api.socket {socket}",
        )
    env = {e["name"]: e for e in sensor.get("env", [])}
    need(
        env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        == "spec.nodeName",
        "NODE_NAME must come from spec.nodeName",
    )
    if "SENSOR_SOCKET" in env:
        need(env["SENSOR_SOCKET"].get("value") == socket, "SENSOR_SOCKET is not api.socket")
    return toml_text


def main():
    manifest_dir, out = sys.argv[1], sys.argv[2]
    problems = []
    toml_text = check(load(manifest_dir), problems)
    if toml_text is not None:
        pathlib.Path(out).write_text(toml_text)
    for p in problems:
        print(f"deploy check: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"deploy check: {manifest_dir}: consistent")


if __name__ == "__main__":
    main()
