//! Kubernetes pod metadata for the containers on this node: container id
//! (from the cgroup path, see `procs/container.rs`) → pod, namespace,
//! labels, owning workload, container name and image.
//!
//! Source: the API server, listing the pods of this node only
//! (`fieldSelector=spec.nodeName=…`, so RBAC needs nothing beyond
//! get/list pods), refreshed on an interval; the service account token is
//! re-read each time (projected tokens rotate). Absent Kubernetes (no
//! `kubernetes.api_server` and no in-cluster environment) nothing runs and
//! events carry no pod.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// One container of a pod, as events show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PodContainer {
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    pub uid: String,
    /// "Kind/name" of the controller that owns the pod, resolved up to a
    /// Deployment (from its ReplicaSet) or a CronJob (from its Job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    pub container: String,
    pub image: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

// The few fields of a PodList read here; everything else is ignored.
#[derive(Deserialize)]
struct PodList {
    #[serde(default)]
    items: Vec<Pod>,
}

#[derive(Deserialize)]
struct Pod {
    metadata: Meta,
    #[serde(default)]
    status: Status,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    owner_references: Vec<Owner>,
}

#[derive(Deserialize)]
struct Owner {
    kind: String,
    name: String,
    #[serde(default)]
    controller: bool,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(default)]
    container_statuses: Vec<ContainerStatus>,
    #[serde(default)]
    init_container_statuses: Vec<ContainerStatus>,
    #[serde(default)]
    ephemeral_container_statuses: Vec<ContainerStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStatus {
    name: String,
    #[serde(default)]
    image: String,
    /// "containerd://<id>", "cri-o://<id>", "docker://<id>"; absent while
    /// the container is being created.
    #[serde(default, rename = "containerID")]
    container_id: String,
}

/// The workload owning a pod: its controller, and for a ReplicaSet made by
/// a Deployment (named `<deployment>-<pod-template-hash>`) the Deployment;
/// for a Job made by a CronJob (`<cronjob>-<schedule time>`) the CronJob.
fn workload(meta: &Meta) -> Option<String> {
    let owner = meta
        .owner_references
        .iter()
        .find(|o| o.controller)
        .or_else(|| meta.owner_references.first())?;
    let hash = meta.labels.get("pod-template-hash");
    match owner.kind.as_str() {
        "ReplicaSet" => match hash.and_then(|h| owner.name.strip_suffix(&format!("-{h}"))) {
            Some(deployment) => Some(format!("Deployment/{deployment}")),
            None => Some(format!("ReplicaSet/{}", owner.name)),
        },
        // A CronJob names its Jobs `<cronjob>-<scheduled time in minutes>`.
        "Job" => match owner.name.rsplit_once('-') {
            Some((cron, t)) if t.len() >= 8 && t.bytes().all(|b| b.is_ascii_digit()) => {
                Some(format!("CronJob/{cron}"))
            }
            _ => Some(format!("Job/{}", owner.name)),
        },
        kind => Some(format!("{kind}/{}", owner.name)),
    }
}

/// Container id (64 hex, the runtime prefix removed) → its pod container,
/// from a PodList's JSON.
pub fn parse_pod_list(json: &[u8]) -> Result<HashMap<String, Arc<PodContainer>>> {
    let list: PodList = serde_json::from_slice(json).context("not a PodList")?;
    let mut out = HashMap::new();
    for pod in list.items {
        let workload = workload(&pod.metadata);
        let statuses = pod
            .status
            .container_statuses
            .iter()
            .chain(&pod.status.init_container_statuses)
            .chain(&pod.status.ephemeral_container_statuses);
        for c in statuses {
            let Some((_, id)) = c.container_id.split_once("://") else {
                continue;
            };
            out.insert(
                id.to_string(),
                Arc::new(PodContainer {
                    namespace: pod.metadata.namespace.clone(),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                    workload: workload.clone(),
                    container: c.name.clone(),
                    image: c.image.clone(),
                    labels: pod.metadata.labels.clone(),
                }),
            );
        }
    }
    Ok(out)
}

/// Where and how to reach the API server.
#[derive(Clone, Debug)]
pub struct Source {
    /// e.g. "https://10.96.0.1:443".
    pub api_server: String,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
    pub node: String,
    pub refresh: Duration,
}

/// The pods of this node, by container id; empty until the first listing.
#[derive(Clone, Default)]
pub struct Pods {
    by_container: Arc<RwLock<HashMap<String, Arc<PodContainer>>>>,
}

impl Pods {
    pub fn lookup(&self, container_id: &str) -> Option<Arc<PodContainer>> {
        self.by_container
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(container_id)
            .cloned()
    }

    /// The pod container a process's container is: its id, under the
    /// cgroup of that very pod (a process cannot name itself into a pod).
    pub fn of(&self, c: &crate::procs::ContainerInfo) -> Option<Arc<PodContainer>> {
        let uid = c.pod_uid.as_deref()?;
        self.lookup(&c.id).filter(|p| p.uid == uid)
    }

    fn replace(&self, map: HashMap<String, Arc<PodContainer>>) {
        *self.by_container.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    /// Keeps the index fresh until `stop`: lists this node's pods now and
    /// every `refresh`. Failures are logged (once per change of error) and
    /// the last good listing is kept.
    pub fn spawn_refresh(
        &self,
        source: Source,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let ca = std::fs::read(&source.ca_file)
            .with_context(|| format!("kubernetes.ca_file {}", source.ca_file.display()))?;
        let ca = reqwest::Certificate::from_pem(&ca).with_context(|| {
            format!(
                "kubernetes.ca_file {}: not a PEM certificate",
                source.ca_file.display()
            )
        })?;
        let client = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(10))
            .build()
            .context("building the Kubernetes API client")?;
        let pods = self.clone();
        Ok(tokio::spawn(async move {
            let mut last_error = String::new();
            loop {
                match list(&client, &source).await {
                    Ok(map) => {
                        if !last_error.is_empty()
                            || pods.by_container.read().map_or(true, |m| m.is_empty())
                        {
                            info!(containers = map.len(), node = %source.node, "pod metadata from the Kubernetes API");
                        }
                        last_error.clear();
                        pods.replace(map);
                    }
                    Err(e) => {
                        let e = format!("{e:#}");
                        if e != last_error {
                            warn!(error = %e, "listing this node's pods failed; events keep the last pod metadata known");
                            last_error = e;
                        }
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(source.refresh) => {}
                    _ = stop.changed() => return,
                }
            }
        }))
    }
}

async fn list(client: &reqwest::Client, s: &Source) -> Result<HashMap<String, Arc<PodContainer>>> {
    // Re-read each time: projected service account tokens rotate.
    let token = std::fs::read_to_string(&s.token_file)
        .with_context(|| format!("reading the token {}", s.token_file.display()))?;
    let url = format!("{}/api/v1/pods", s.api_server.trim_end_matches('/'));
    let resp = client
        .get(&url)
        .query(&[("fieldSelector", format!("spec.nodeName={}", s.node))])
        .bearer_auth(token.trim())
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .with_context(|| format!("reading {url}"))?;
    if !status.is_success() {
        let why = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        bail!("GET {url}: {status}: {why}");
    }
    parse_pod_list(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like `kubectl get --raw '/api/v1/pods?fieldSelector=spec.nodeName=node-1'`
    /// on containerd and CRI-O clusters (trimmed to the fields that matter,
    /// with the others a real listing carries around them).
    const LIST: &str = include_str!("../../tests/fixtures/k8s/pods.json");

    #[test]
    fn containers_map_to_their_pod_and_workload() {
        let m = parse_pod_list(LIST.as_bytes()).unwrap();
        let id = "4b8f3c8d2b1e0f9a7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b";
        let c = &m[id];
        assert_eq!(c.namespace, "shop");
        assert_eq!(c.name, "orderer-7d9c5b6f4-x2x9k");
        assert_eq!(c.workload.as_deref(), Some("Deployment/orderer"));
        assert_eq!(c.container, "agent");
        assert_eq!(c.image, "registry.example/shop/orderer:1.4.2");
        assert_eq!(c.labels["app"], "orderer");
        // The sidecar of the same pod, and a second replica: same workload.
        let sidecar = &m["9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b"];
        assert_eq!(sidecar.container, "proxy");
        assert_eq!(sidecar.name, c.name);
        let replica = &m["1111111111111111111111111111111111111111111111111111111111111111"];
        assert_eq!(replica.workload, c.workload);
        assert_ne!(replica.name, c.name);
        // CRI-O ids, a CronJob's pod, a StatefulSet's, a bare pod.
        let cron = &m["2222222222222222222222222222222222222222222222222222222222222222"];
        assert_eq!(cron.workload.as_deref(), Some("CronJob/nightly-report"));
        let sts = &m["3333333333333333333333333333333333333333333333333333333333333333"];
        assert_eq!(sts.workload.as_deref(), Some("StatefulSet/ledger"));
        let bare = &m["4444444444444444444444444444444444444444444444444444444444444444"];
        assert_eq!(bare.workload, None);
        // A container still being created has no id yet: not indexed.
        assert_eq!(
            m["5555555555555555555555555555555555555555555555555555555555555555"].container,
            "migrate"
        );
        assert_eq!(m.len(), 7, "{:?}", m.keys().collect::<Vec<_>>());
    }

    #[test]
    fn a_bad_listing_is_an_error_not_a_panic() {
        assert!(parse_pod_list(b"").is_err());
        assert!(parse_pod_list(b"{\"items\": 3}").is_err());
        assert!(parse_pod_list(b"{}").unwrap().is_empty());
        let m = parse_pod_list(br#"{"items":[{"metadata":{},"status":{"containerStatuses":[{"name":"x","containerID":"garbage"}]}}]}"#).unwrap();
        assert!(m.is_empty());
    }
}
