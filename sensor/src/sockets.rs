//! The first bytes of connected sockets: a TLS ClientHello names the
//! destination (SNI) of any TLS client; plain-text requests go to the HTTP
//! layer. Connections are known by (process, fd) from connect events.

use std::{collections::HashMap, net::IpAddr};

use crate::{
    clock::Clock,
    decode::SockData,
    event::{Detail, Event},
    procs::ProcessTable,
    tls::client_hello,
};

/// (pid, start ticks, fd) → destination, from the connect that opened it.
type ConnKey = (u32, u64, i32);

#[derive(Default)]
pub struct FirstBytes {
    conns: HashMap<ConnKey, (IpAddr, u16)>,
    /// ClientHellos that did not parse (counted, never fatal).
    pub hello_errors: u64,
}

/// Connections remembered at most; older ones are dropped (their first
/// bytes come right after connect, so a small table suffices).
const MAX_CONNS: usize = 65536;

impl FirstBytes {
    /// Remembers where each connect went.
    pub fn on_event(&mut self, ev: &Event) {
        if let Detail::Connect {
            fd,
            daddr,
            dport,
            result,
            ..
        } = &ev.detail
            && (*result == 0 || *result == -libc::EINPROGRESS)
        {
            if self.conns.len() >= MAX_CONNS {
                self.conns.clear();
            }
            self.conns.insert(
                (ev.process.pid, ev.process.start_ticks, *fd),
                (*daddr, *dport),
            );
        }
    }

    /// An event for data worth reporting on its own (a ClientHello).
    pub fn on_data(
        &mut self,
        d: &SockData,
        procs: &mut ProcessTable,
        clock: &Clock,
    ) -> Option<Event> {
        if !client_hello::looks_like_client_hello(&d.data) {
            return None;
        }
        let hello = match client_hello::parse(&d.data) {
            Ok(h) => h,
            Err(e) => {
                self.hello_errors += 1;
                tracing::debug!(error = %e, "unparsable ClientHello");
                return None;
            }
        };
        let process = procs.resolve(&d.hdr.header);
        let dst = self
            .conns
            .get(&(process.pid, process.start_ticks, d.hdr.fd))
            .copied();
        Some(Event::new(
            clock,
            &d.hdr.header,
            process,
            Detail::TlsClientHello {
                fd: d.hdr.fd,
                daddr: dst.map(|d| d.0),
                dport: dst.map(|d| d.1),
                sni: hello.sni,
                alpn: hello.alpn,
            },
        ))
    }
}
