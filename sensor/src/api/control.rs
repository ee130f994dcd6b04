//! Who may call the control RPCs (isolate, release, kill, approve and
//! deny holds, baseline import, and any later one): every control RPC
//! goes through `Control::authorize`, which also names the caller for the
//! `action` event and the logs.
//!
//! The unix socket is root-only, so its clients may act. On the TCP
//! listener every client already holds a certificate from `client_ca`;
//! control is refused unless `api.tcp.allow_control` (any such client) or
//! `api.tcp.control_clients` names the certificate: an entry matches the
//! subject's common name (CN) or one of the subject alternative DNS names.

use std::sync::Arc;

use tonic::{Request, Status, transport::server::UdsConnectInfo};

/// A listener's control policy.
#[derive(Clone, Debug)]
pub enum Control {
    /// The unix socket: root-only, everyone on it may act.
    Local,
    /// TCP with `allow_control = true`: every client of the CA.
    AnyClient,
    /// TCP: only certificates with one of these names (empty: nobody).
    Named(Arc<Vec<String>>),
}

/// The names a client certificate presents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientIdentity {
    pub common_names: Vec<String>,
    pub dns_names: Vec<String>,
}

impl ClientIdentity {
    /// Reads the end-entity certificate (DER). An unparsable certificate
    /// has no names (the TLS layer already verified its chain).
    pub fn from_der(der: &[u8]) -> Self {
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
            return Self::default();
        };
        let common_names = cert
            .subject()
            .iter_common_name()
            .filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect();
        let dns_names = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|g| match g {
                        x509_parser::extensions::GeneralName::DNSName(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            common_names,
            dns_names,
        }
    }

    /// Whether `allowed` names this client (exact, ASCII case-insensitive
    /// for DNS names, as DNS is).
    pub fn matches(&self, allowed: &[String]) -> bool {
        allowed.iter().any(|a| {
            self.common_names.iter().any(|cn| cn == a)
                || self.dns_names.iter().any(|d| d.eq_ignore_ascii_case(a))
        })
    }

    /// "CN=soc-responder, DNS=responder.soc.example", for messages.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .common_names
            .iter()
            .map(|c| format!("CN={c}"))
            .chain(self.dns_names.iter().map(|d| format!("DNS={d}")))
            .collect();
        if parts.is_empty() {
            "a certificate with no CN and no DNS name".into()
        } else {
            parts.join(", ")
        }
    }
}

fn peer_identity<T>(req: &Request<T>) -> ClientIdentity {
    req.peer_certs()
        .and_then(|certs| certs.first().map(|c| ClientIdentity::from_der(c)))
        .unwrap_or_default()
}

/// Who is on the other end, for the audit trail: the unix socket peer's
/// uid and pid, or the TLS client's certificate names and address.
pub fn caller<T>(req: &Request<T>) -> String {
    if let Some(info) = req.extensions().get::<UdsConnectInfo>() {
        return match &info.peer_cred {
            Some(c) => format!(
                "api (unix socket, uid {}, pid {})",
                c.uid(),
                c.pid().unwrap_or(0)
            ),
            None => "api (unix socket)".into(),
        };
    }
    let addr = req
        .remote_addr()
        .map(|a| format!(" from {a}"))
        .unwrap_or_default();
    format!("api (mTLS client {}{addr})", peer_identity(req).describe())
}

impl Control {
    /// The policy of the TCP listener from its config.
    pub fn tcp(allow_control: bool, control_clients: &[String]) -> Self {
        if allow_control {
            Self::AnyClient
        } else {
            Self::Named(Arc::new(control_clients.to_vec()))
        }
    }

    /// Lets `rpc` (a control RPC) go on, returning who asked, or refuses
    /// it with PERMISSION_DENIED naming the identity seen.
    pub fn authorize<T>(&self, req: &Request<T>, rpc: &str) -> Result<String, Status> {
        match self {
            Self::Local | Self::AnyClient => Ok(caller(req)),
            Self::Named(allowed) => {
                let id = peer_identity(req);
                if id.matches(allowed) {
                    return Ok(caller(req));
                }
                let why = if allowed.is_empty() {
                    "this TCP listener serves no control RPC (api.tcp.control_clients is empty)"
                        .to_string()
                } else {
                    format!(
                        "the client certificate ({}) is not named in api.tcp.control_clients",
                        id.describe()
                    )
                };
                tracing::warn!(rpc, client = %id.describe(), "control RPC refused on the TCP listener");
                Err(Status::permission_denied(format!(
                    "{rpc} is a control RPC and {why}: use the unix socket, or a certificate whose CN or DNS name is listed there"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(cn: &[&str], dns: &[&str]) -> ClientIdentity {
        ClientIdentity {
            common_names: cn.iter().map(|s| s.to_string()).collect(),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn names_match_on_cn_or_dns() {
        let allowed = vec!["responder".to_string(), "soc.example".to_string()];
        assert!(id(&["responder"], &[]).matches(&allowed));
        assert!(
            id(&["x"], &["SOC.example"]).matches(&allowed),
            "DNS is case-insensitive"
        );
        assert!(!id(&["Responder"], &[]).matches(&allowed), "CN is exact");
        assert!(!id(&["reader"], &["reader.soc.example"]).matches(&allowed));
        assert!(!id(&[], &[]).matches(&allowed));
        assert_eq!(id(&["a"], &["b.example"]).describe(), "CN=a, DNS=b.example");
    }

    #[test]
    fn refusals_name_the_identity_and_the_key() {
        let c = Control::tcp(false, &["responder".into()]);
        // A request without TLS peer certificates: no names at all.
        let e = c.authorize(&Request::new(()), "isolate").unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(
            e.message().contains("isolate")
                && e.message().contains("no CN")
                && e.message().contains("api.tcp.control_clients"),
            "{}",
            e.message()
        );
        let e = Control::tcp(false, &[])
            .authorize(&Request::new(()), "kill")
            .unwrap_err();
        assert!(e.message().contains("is empty"), "{}", e.message());
        assert!(
            Control::tcp(true, &[])
                .authorize(&Request::new(()), "kill")
                .is_ok()
        );
        assert!(Control::Local.authorize(&Request::new(()), "kill").is_ok());
    }
}
