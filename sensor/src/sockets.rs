//! Connected sockets by (process, fd), from connect events: where they go
//! and, from their first bytes, whether they speak TLS and to which name
//! (a ClientHello's SNI names the destination of any TLS client). Plain
//! text goes on to the HTTP layer.

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

/// Where a connected socket goes, and what its ClientHello said.
#[derive(Clone, Debug, PartialEq)]
pub struct Destination {
    pub addr: IpAddr,
    pub port: u16,
    /// A TLS ClientHello was sent on it.
    pub tls: bool,
    pub sni: Option<String>,
}

#[derive(Default)]
pub struct FirstBytes {
    conns: HashMap<ConnKey, Destination>,
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
                Destination {
                    addr: *daddr,
                    port: *dport,
                    tls: false,
                    sni: None,
                },
            );
        }
    }

    /// The destination of socket `fd` of a process, if it was connected
    /// while the sensor ran.
    pub fn get(&self, pid: u32, start_ticks: u64, fd: i32) -> Option<&Destination> {
        self.conns.get(&(pid, start_ticks, fd))
    }

    /// An event for data worth reporting on its own (a ClientHello).
    pub fn on_data(
        &mut self,
        d: &SockData,
        procs: &mut ProcessTable,
        clock: &Clock,
    ) -> Option<Event> {
        if d.hdr.dir != sensor_common::TLS_DIR_WRITE
            || !client_hello::looks_like_client_hello(&d.data)
        {
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
            .get_mut(&(process.pid, process.start_ticks, d.hdr.fd))
            .map(|dst| {
                dst.tls = true;
                dst.sni.clone_from(&hello.sni);
                (dst.addr, dst.port)
            });
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
