//! Connected sockets by (process, fd), from connect events: where they go
//! and, from their first bytes, whether they speak TLS and to which name
//! (a ClientHello's SNI names the destination of any TLS client). Plain
//! text goes on to the HTTP layer.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

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
    /// Each destination with the number of its connect, which `order`
    /// names it by.
    conns: HashMap<ConnKey, (u64, Destination)>,
    /// Connects, oldest first; an entry whose number is no longer its
    /// key's (forgotten, or connected again) is skipped.
    order: VecDeque<(ConnKey, u64)>,
    next: u64,
    /// ClientHellos that did not parse (counted, never fatal).
    pub hello_errors: u64,
}

/// Connections remembered at most. Those of exited processes are
/// forgotten by `sweep`; past this, the oldest go first. (The table was
/// once emptied when full: any user could then blind the destinations of
/// every open connection by connecting 65,536 sockets.)
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
            let key = (ev.process.pid, ev.process.start_ticks, *fd);
            let dst = Destination {
                addr: *daddr,
                port: *dport,
                tls: false,
                sni: None,
            };
            self.remember(key, dst);
        }
    }

    fn remember(&mut self, key: ConnKey, dst: Destination) {
        while self.conns.len() >= MAX_CONNS
            && let Some((old, n)) = self.order.pop_front()
        {
            if self.conns.get(&old).is_some_and(|(m, _)| *m == n) {
                self.conns.remove(&old);
            }
        }
        // Entries of forgotten or reconnected keys pile up in `order`
        // between evictions: shed them once they are as many as the live.
        if self.order.len() >= 2 * MAX_CONNS {
            let conns = &self.conns;
            self.order
                .retain(|(k, n)| conns.get(k).is_some_and(|(m, _)| m == n));
        }
        self.next += 1;
        self.conns.insert(key, (self.next, dst));
        self.order.push_back((key, self.next));
    }

    /// Forgets the connections of processes `exited` names (after their
    /// streams have been ended and reported, which reads them).
    pub fn sweep(&mut self, exited: impl Fn(u32, u64) -> bool) {
        self.conns.retain(|k, _| !exited(k.0, k.1));
    }

    /// The destination of socket `fd` of a process, if it was connected
    /// while the sensor ran.
    pub fn get(&self, pid: u32, start_ticks: u64, fd: i32) -> Option<&Destination> {
        self.conns.get(&(pid, start_ticks, fd)).map(|(_, d)| d)
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
            .map(|(_, dst)| {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dst(port: u16) -> Destination {
        Destination {
            addr: IpAddr::from([127, 0, 0, 1]),
            port,
            tls: false,
            sni: None,
        }
    }

    /// A flood of connects from processes that exit evicts them, not the
    /// open connection of a process that lives on (the table used to be
    /// emptied when full).
    #[test]
    fn a_flood_of_connects_keeps_the_live_ones() {
        let mut fb = FirstBytes::default();
        fb.remember((1, 10, 3), dst(443));
        for i in 0..3 * MAX_CONNS as u32 {
            fb.remember((1000 + i / 1000, 20, (i % 1000) as i32), dst(9));
            if i % 1000 == 999 {
                // Each flooding process exits; the sweep forgets it.
                let gone = 1000 + i / 1000;
                fb.sweep(|pid, _| pid == gone);
            }
        }
        assert_eq!(fb.get(1, 10, 3).map(|d| d.port), Some(443));
        assert!(fb.conns.len() <= 1001, "{}", fb.conns.len());
        assert!(fb.order.len() < 2 * MAX_CONNS + 1, "{}", fb.order.len());
    }

    /// Past the bound, live connections go oldest first, one at a time.
    #[test]
    fn the_oldest_connection_goes_first_when_full() {
        let mut fb = FirstBytes::default();
        for i in 0..MAX_CONNS as i32 {
            fb.remember((1, 10, i), dst(1));
        }
        // fd 0 connected again: now the newest.
        fb.remember((1, 10, 0), dst(2));
        fb.remember((2, 10, 0), dst(3));
        assert_eq!(fb.conns.len(), MAX_CONNS);
        assert_eq!(fb.get(1, 10, 0).map(|d| d.port), Some(2));
        assert!(fb.get(1, 10, 1).is_none(), "the oldest stays");
        assert!(fb.get(1, 10, 2).is_some());
        assert_eq!(fb.get(2, 10, 0).map(|d| d.port), Some(3));
    }
}
