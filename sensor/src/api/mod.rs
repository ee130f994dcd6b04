//! The gRPC API (`proto/sensor/v1`): the event stream and history for SOC
//! tools, the sensor's status, the standard health service and server
//! reflection. Served on a root-only unix socket for the CLI and local
//! tools, and optionally on TCP with mutual TLS for remote collectors.
//!
//! - `bus`: pipeline → subscribers, with replay and lag reporting.
//! - `convert`: events as API messages.
//! - `filter`: subscription allow/deny lists.
//! - `events`, `status`, `agents`, `baselines`, `response`: the services;
//!   `store`: history reads.
//! - `control`: who may call the control RPCs, and who asked.
//! - `authority`: a valid `:authority` for stock clients on the socket.
//! - `client`: the CLI's side.

pub mod agents;
mod authority;
pub mod baselines;
pub mod bus;
pub mod client;
pub mod control;
pub mod convert;
pub mod events;
pub mod filter;
pub mod response;
pub mod status;
pub mod store;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result, bail};
use sensor_proto::v1::{
    self as pb, FILE_DESCRIPTOR_SET, agents_server::AgentsServer,
    baselines_server::BaselinesServer, events_server::EventsServer,
    response_server::ResponseServer, sensor_server::SensorServer,
};
use tokio::{net::UnixListener, sync::watch, task::JoinHandle};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{
    Request, Response, Status,
    transport::{Certificate, Identity, Server, ServerTlsConfig},
};
use tracing::info;

use crate::config::ApiConfig;
use bus::Bus;
use control::Control;
use status::StatusBoard;

struct SensorService {
    board: Arc<StatusBoard>,
    bus: Arc<Bus>,
}

#[tonic::async_trait]
impl pb::sensor_server::Sensor for SensorService {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(self.board.report(self.bus.subscribers())))
    }
}

/// The running listeners; dropping it does not stop them, `stop` does.
pub struct Serving {
    tasks: Vec<JoinHandle<()>>,
    socket: Option<PathBuf>,
}

impl Serving {
    /// Waits for the listeners to finish (after the stop signal and the
    /// bus closing, which ends every event stream) and removes the unix
    /// socket. A client that does not hang up is cut off after a while.
    pub async fn finish(self) {
        for mut t in self.tasks {
            if tokio::time::timeout(std::time::Duration::from_secs(3), &mut t)
                .await
                .is_err()
            {
                t.abort();
            }
        }
        if let Some(p) = self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// What the services read and act on.
pub struct Backends {
    pub bus: Arc<Bus>,
    pub board: Arc<StatusBoard>,
    pub store: Option<store::Store>,
    pub agents: Arc<std::sync::Mutex<crate::agents::Agents>>,
    pub responder: Arc<std::sync::Mutex<crate::respond::responder::Responder>>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Starts the listeners the config asks for. Errors (socket in use, bad
/// certificates) are reported before anything is served.
pub async fn serve(
    cfg: &ApiConfig,
    backends: Backends,
    stop: watch::Receiver<bool>,
) -> Result<Serving> {
    let Backends {
        bus,
        board,
        store,
        agents,
        responder,
        metrics,
    } = backends;
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<EventsServer<events::EventsService>>()
        .await;
    health.set_serving::<SensorServer<SensorService>>().await;
    health
        .set_serving::<AgentsServer<agents::AgentsService>>()
        .await;
    health
        .set_serving::<BaselinesServer<baselines::BaselinesService>>()
        .await;
    health
        .set_serving::<ResponseServer<response::ResponseService>>()
        .await;
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;
    // Many tools (grpcurl before 1.9, Python's grpcio-reflection) still ask
    // the v1alpha service.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building the reflection service")?;
    let router = |builder: &mut Server, control: Control| {
        builder
            .add_service(EventsServer::new(events::EventsService {
                bus: bus.clone(),
                store: store.clone(),
                metrics: metrics.clone(),
            }))
            .add_service(SensorServer::new(SensorService {
                board: board.clone(),
                bus: bus.clone(),
            }))
            .add_service(AgentsServer::new(agents::AgentsService {
                agents: agents.clone(),
            }))
            .add_service(BaselinesServer::new(baselines::BaselinesService {
                agents: agents.clone(),
                control: control.clone(),
            }))
            .add_service(ResponseServer::new(response::ResponseService {
                responder: responder.clone(),
                control,
            }))
            .add_service(health_service.clone())
            .add_service(reflection_v1.clone())
            .add_service(reflection_v1alpha.clone())
    };
    let mut tasks = Vec::new();
    let mut socket = None;
    if !cfg.socket.as_os_str().is_empty() {
        let listener = bind_unix(&cfg.socket)?;
        info!(socket = %cfg.socket.display(), "API listening (unix socket, mode 0600)");
        let routes = router(&mut Server::builder(), Control::Local);
        let mut stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            // Stock gRPC clients name the socket path as :authority,
            // which h2 refuses: see authority.rs.
            let incoming = tokio_stream::StreamExt::map(UnixListenerStream::new(listener), |c| {
                c.map(authority::normalise)
            });
            let done = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = routes.serve_with_incoming_shutdown(incoming, done).await {
                tracing::error!(error = %e, "API (unix socket) stopped");
            }
        }));
        socket = Some(cfg.socket.clone());
    }
    if let Some(tcp) = &cfg.tcp {
        let read = |p: &Path, what: &str| {
            std::fs::read(p).with_context(|| format!("api.tcp.{what}: reading {}", p.display()))
        };
        let identity = Identity::from_pem(read(&tcp.cert, "cert")?, read(&tcp.key, "key")?);
        let ca = Certificate::from_pem(read(&tcp.client_ca, "client_ca")?);
        let tls = ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(ca)
            .client_auth_optional(false);
        let mut builder = Server::builder()
            .tls_config(tls)
            .context("api.tcp: the certificate, key or client CA is not usable")?;
        let listener = tokio::net::TcpListener::bind(tcp.listen)
            .await
            .with_context(|| format!("api.tcp.listen: cannot listen on {}", tcp.listen))?;
        let control = Control::tcp(tcp.allow_control, &tcp.control_clients);
        info!(listen = %listener.local_addr()?, control = ?control, "API listening (TCP, mutual TLS)");
        let routes = router(&mut builder, control);
        let mut stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let done = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = routes.serve_with_incoming_shutdown(incoming, done).await {
                tracing::error!(error = %e, "API (TCP) stopped");
            }
        }));
    }
    Ok(Serving { tasks, socket })
}

/// Binds the unix socket root-only. A socket file left by a daemon that
/// died is replaced; one a live daemon answers on is not.
fn bind_unix(path: &Path) -> Result<UnixListener> {
    crate::state::private_parent(path, "api.socket")?;
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "api.socket: another sensor is already serving on {} (stop it, or set api.socket)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("api.socket: removing stale {}", path.display()))?;
    }
    // Bound under a temporary name, narrowed to 0600, then renamed: the
    // socket is never reachable at its real path with looser permissions.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)
        .with_context(|| format!("api.socket: cannot listen on {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("api.socket: chmod 0600 {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("api.socket: renaming to {}", path.display()))?;
    Ok(listener)
}
