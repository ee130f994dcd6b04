//! HTTP streams: captured bytes grouped per connection (TLS connection
//! object or plain socket, within a process), fed to HTTP parsers, and
//! paired into API calls (request with its response). Bounded in streams
//! and bytes; what is evicted is counted.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{agents::llm::LlmSummary, http::stream::Kept, procs::Process};

/// Requests one connection may have awaiting their responses: pipelining
/// is shallow in practice (HTTP/2 clients run about a hundred streams).
pub const MAX_PENDING: usize = 256;

/// Bytes all connections' awaiting requests may hold together (targets,
/// authorities, summaries). A client that never reads its responses must
/// not make the daemon keep its requests without bound (issue 19,
/// finding 2).
pub const PENDING_BUDGET: usize = 32 << 20;

/// What a waiting request costs against `PENDING_BUDGET`.
fn cost(r: &RequestSummary) -> usize {
    r.method.len()
        + r.target.len()
        + r.authority.len()
        + r.http_version.len()
        + r.credential_fingerprint.as_ref().map_or(0, String::len)
        + r.llm.as_ref().map_or(0, |l| {
            l.model.as_ref().map_or(0, String::len) + std::mem::size_of::<LlmSummary>()
        })
        + r.db.as_ref().map_or(0, |d| {
            std::mem::size_of::<crate::db::DbRequest>() + d.statement.template.len()
        })
        + std::mem::size_of::<Pending>()
}

/// What the HTTP layer reports for one request (secrets already replaced
/// by fingerprints).
#[derive(Clone, Debug, PartialEq)]
pub struct RequestSummary {
    pub method: String,
    pub target: String,
    pub authority: String,
    pub http_version: String,
    pub credential_fingerprint: Option<String>,
    pub body_bytes: u64,
    pub head_bytes: u64,
    /// What the body of a request to an LLM provider says, read when the
    /// request completed (its bytes do not wait for the response).
    pub llm: Option<Box<LlmSummary>>,
    /// A database statement (the method, target and authority then say
    /// the statement's verb, template and database).
    pub db: Option<crate::db::DbRequest>,
}

/// What the HTTP layer reports for one response.
#[derive(Clone, Debug, PartialEq)]
pub struct ResponseSummary {
    pub status: u16,
    pub body_bytes: u64,
    pub head_bytes: u64,
    pub body: Option<Kept>,
    pub content_type: Option<String>,
    /// A database server's answer (`status` is then 0).
    pub db: Option<crate::db::DbResult>,
}

/// One HTTP exchange, attributed, ready to become an `api_call` event.
#[derive(Clone, Debug)]
pub struct ApiCall {
    pub process: Arc<Process>,
    pub conn: u64,
    /// The socket the connection uses, when known.
    pub fd: Option<i32>,
    /// The TLS library the plaintext came from; None for plain sockets.
    pub tls_library: Option<&'static str>,
    pub request: RequestSummary,
    /// None when the stream ended (or was evicted) before a response.
    pub response: Option<ResponseSummary>,
    /// Kernel time (ns since boot) of the request's first bytes.
    pub started_ns: u64,
    pub finished_ns: u64,
    /// Thread that sent the request.
    pub tid: u32,
}

/// Stream identity: the connection object is only unique within a process
/// incarnation.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct StreamKey {
    pub pid: u32,
    pub start_ticks: u64,
    pub conn: u64,
}

/// A request awaiting its response.
struct Pending {
    request: RequestSummary,
    started_ns: u64,
    tid: u32,
    /// HTTP/2 stream id; 0 for HTTP/1.x, where responses come in order.
    sid: u32,
    cost: usize,
}

pub struct Stream<P> {
    pub parsers: P,
    pub process: Arc<Process>,
    /// None for plain sockets.
    pub tls_library: Option<&'static str>,
    /// The socket, once known (from the kernel's binding of TLS calls to
    /// sockets; always for plain sockets).
    pub fd: Option<i32>,
    pending: VecDeque<Pending>,
    /// Bytes of `pending`, also counted in the flows' shared total.
    pending_bytes: usize,
    shared: Arc<AtomicUsize>,
    /// Too many requests waited (`MAX_PENDING`, `PENDING_BUDGET`): this
    /// connection's calls are reported as their requests complete,
    /// without their responses.
    pub unpaired: bool,
    last_seen: Instant,
    /// Kernel time of the stream's last record.
    pub last_ns: u64,
}

impl<P> Drop for Stream<P> {
    fn drop(&mut self) {
        self.shared.fetch_sub(self.pending_bytes, Ordering::Relaxed);
    }
}

impl<P> Stream<P> {
    /// A request (on HTTP/2 stream `sid`, else 0) finished at kernel time
    /// `ns`: await its response. Returns the calls reported at once: once
    /// the connection has `MAX_PENDING` requests waiting, or all of them
    /// `PENDING_BUDGET` bytes, the connection turns `unpaired` and its
    /// waiting and later requests are reported without responses, so no
    /// request is lost and memory stays bounded.
    pub fn request(
        &mut self,
        key: &StreamKey,
        req: RequestSummary,
        ns: u64,
        tid: u32,
        sid: u32,
    ) -> Vec<ApiCall> {
        let cost = cost(&req);
        let p = Pending {
            request: req,
            started_ns: ns,
            tid,
            sid,
            cost,
        };
        if !self.unpaired
            && (self.pending.len() >= MAX_PENDING
                || self.shared.load(Ordering::Relaxed) + cost > PENDING_BUDGET)
        {
            self.unpaired = true;
        }
        if self.unpaired {
            let mut out = self.drain_unanswered(key, ns);
            out.push(self.call(key, p, None, ns));
            return out;
        }
        self.pending_bytes += cost;
        self.shared.fetch_add(cost, Ordering::Relaxed);
        self.pending.push_back(p);
        Vec::new()
    }

    /// A response finished: pair it with the oldest pending request of the
    /// same HTTP/2 stream (the oldest of all for HTTP/1.x).
    pub fn response(
        &mut self,
        key: &StreamKey,
        sid: u32,
        resp: ResponseSummary,
        ns: u64,
    ) -> Option<ApiCall> {
        let i = self.pending.iter().position(|p| p.sid == sid)?;
        let p = self.pending.remove(i)?;
        self.pending_bytes -= p.cost;
        self.shared.fetch_sub(p.cost, Ordering::Relaxed);
        Some(self.call(key, p, Some(resp), ns))
    }

    fn call(
        &self,
        key: &StreamKey,
        p: Pending,
        response: Option<ResponseSummary>,
        ns: u64,
    ) -> ApiCall {
        ApiCall {
            process: self.process.clone(),
            conn: key.conn,
            fd: self.fd,
            tls_library: self.tls_library,
            request: p.request,
            response,
            started_ns: p.started_ns,
            finished_ns: ns,
            tid: p.tid,
        }
    }

    fn drain_unanswered(&mut self, key: &StreamKey, now_ns: u64) -> Vec<ApiCall> {
        let pending = std::mem::take(&mut self.pending);
        self.shared.fetch_sub(self.pending_bytes, Ordering::Relaxed);
        self.pending_bytes = 0;
        pending
            .into_iter()
            .map(|p| self.call(key, p, None, now_ns))
            .collect()
    }
}

#[derive(Default, Debug, Clone, Copy)]
pub struct FlowStats {
    pub streams_evicted: u64,
}

pub struct Flows<P> {
    streams: HashMap<StreamKey, Stream<P>>,
    max_streams: usize,
    idle: Duration,
    pub stats: FlowStats,
    /// Bytes of all streams' waiting requests.
    pending_bytes: Arc<AtomicUsize>,
}

impl<P> Flows<P> {
    pub fn new(max_streams: usize, idle: Duration) -> Self {
        Self {
            streams: HashMap::new(),
            max_streams,
            idle,
            stats: FlowStats::default(),
            pending_bytes: Arc::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Bytes all streams' waiting requests hold.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// The stream for `key`, made with `make` if new. When the table is
    /// full the least recently used stream goes first; its unanswered
    /// requests come back so they are still reported.
    pub fn stream(
        &mut self,
        key: StreamKey,
        process: &Arc<Process>,
        tls_library: Option<&'static str>,
        now_ns: u64,
        make: impl FnOnce() -> P,
        evicted: &mut Vec<ApiCall>,
    ) -> &mut Stream<P> {
        if !self.streams.contains_key(&key)
            && self.streams.len() >= self.max_streams
            && let Some(oldest) = self
                .streams
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k)
            && let Some(mut s) = self.streams.remove(&oldest)
        {
            evicted.extend(s.drain_unanswered(&oldest, now_ns));
            self.stats.streams_evicted += 1;
        }
        let s = self.streams.entry(key).or_insert_with(|| Stream {
            parsers: make(),
            process: process.clone(),
            tls_library,
            fd: None,
            pending: VecDeque::new(),
            pending_bytes: 0,
            shared: self.pending_bytes.clone(),
            unpaired: false,
            last_seen: Instant::now(),
            last_ns: now_ns,
        });
        s.last_seen = Instant::now();
        s.last_ns = s.last_ns.max(now_ns);
        s
    }

    /// The stream for `key` if there is one.
    pub fn existing(&mut self, key: &StreamKey) -> Option<&mut Stream<P>> {
        let s = self.streams.get_mut(key)?;
        s.last_seen = Instant::now();
        Some(s)
    }

    /// Ends the stream for `key` (its connection closed or was replaced);
    /// its unanswered requests are returned.
    pub fn end(&mut self, key: &StreamKey, now_ns: u64) -> Vec<ApiCall> {
        match self.streams.remove(key) {
            Some(mut s) => s.drain_unanswered(key, now_ns),
            None => Vec::new(),
        }
    }

    /// Ends idle streams (and all streams of exited processes, which the
    /// caller names): `close` completes what only the end of the
    /// connection completes (a response read until close), then their
    /// unanswered requests are returned.
    pub fn sweep(
        &mut self,
        now: Instant,
        now_ns: u64,
        exited: impl Fn(&StreamKey) -> bool,
        mut close: impl FnMut(&StreamKey, &mut Stream<P>) -> Vec<ApiCall>,
    ) -> Vec<ApiCall> {
        let idle = self.idle;
        let gone: Vec<StreamKey> = self
            .streams
            .iter()
            .filter(|(k, s)| now.duration_since(s.last_seen) > idle || exited(k))
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        for k in gone {
            if let Some(mut s) = self.streams.remove(&k) {
                out.extend(close(&k, &mut s));
                out.extend(s.drain_unanswered(&k, now_ns));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process() -> Arc<Process> {
        Arc::new(Process {
            pid: 7,
            start_ticks: 1,
            ppid: 1,
            uid: 0,
            comm: "agent".into(),
            exe: "/usr/bin/agent".into(),
            cmdline: vec![],
            cgroup: None,
            cgroup_id: 0,
            container: None,
            partial: false,
            held: Vec::new(),
        })
    }

    fn req(path: &str) -> RequestSummary {
        RequestSummary {
            method: "GET".into(),
            target: path.into(),
            authority: "vendor.example".into(),
            http_version: "HTTP/1.1".into(),
            credential_fingerprint: None,
            body_bytes: 0,
            head_bytes: 40,
            llm: None,
            db: None,
        }
    }

    fn key_of(conn: u64) -> StreamKey {
        StreamKey {
            pid: 7,
            start_ticks: 1,
            conn,
        }
    }

    fn resp(status: u16) -> ResponseSummary {
        ResponseSummary {
            status,
            body_bytes: 2,
            head_bytes: 30,
            body: None,
            content_type: None,
            db: None,
        }
    }

    #[test]
    fn pipelined_requests_pair_in_order() {
        let mut f: Flows<()> = Flows::new(8, Duration::from_secs(60));
        let key = key_of(0x10);
        let p = process();
        let mut ev = Vec::new();
        let s = f.stream(key, &p, Some("openssl"), 0, || (), &mut ev);
        assert!(s.request(&key, req("/a"), 100, 7, 0).is_empty());
        assert!(s.request(&key, req("/b"), 110, 7, 0).is_empty());
        let a = s.response(&key, 0, resp(200), 150).unwrap();
        let b = s.response(&key, 0, resp(404), 190).unwrap();
        assert_eq!(
            (a.request.target.as_str(), a.response.unwrap().status),
            ("/a", 200)
        );
        assert_eq!(
            (b.request.target.as_str(), b.finished_ns - b.started_ns),
            ("/b", 80)
        );
        assert!(
            s.response(&key, 0, resp(200), 200).is_none(),
            "no request left to pair"
        );
    }

    #[test]
    fn http2_responses_pair_by_stream_id() {
        let mut f: Flows<()> = Flows::new(8, Duration::from_secs(60));
        let key = key_of(0x10);
        let p = process();
        let mut ev = Vec::new();
        let s = f.stream(key, &p, Some("openssl"), 0, || (), &mut ev);
        assert!(s.request(&key, req("/slow"), 100, 7, 1).is_empty());
        assert!(s.request(&key, req("/fast"), 110, 7, 3).is_empty());
        let fast = s.response(&key, 3, resp(201), 120).unwrap();
        assert_eq!(fast.request.target, "/fast");
        assert!(
            s.response(&key, 5, resp(200), 130).is_none(),
            "unknown stream"
        );
        let slow = s.response(&key, 1, resp(200), 300).unwrap();
        assert_eq!(
            (slow.request.target.as_str(), slow.finished_ns),
            ("/slow", 300)
        );
        assert!(f.end(&key, 400).is_empty());
        assert!(f.is_empty());
    }

    #[test]
    fn eviction_is_bounded_counted_and_loses_no_request() {
        let mut f: Flows<()> = Flows::new(2, Duration::from_secs(60));
        let p = process();
        let mut ev = Vec::new();
        for conn in 0..5u64 {
            let key = key_of(conn);
            let s = f.stream(key, &p, Some("openssl"), conn, || (), &mut ev);
            assert!(s.request(&key, req("/x"), conn, 7, 0).is_empty());
        }
        assert_eq!(f.len(), 2);
        assert_eq!(f.stats.streams_evicted, 3);
        assert_eq!(
            ev.len(),
            3,
            "evicted streams report their unanswered requests"
        );
        assert!(ev.iter().all(|c| c.response.is_none()));
        let rest = f.sweep(Instant::now(), 99, |_| true, |_, _| Vec::new());
        assert_eq!(rest.len(), 2);
        assert!(f.is_empty());
    }

    #[test]
    fn requests_that_are_never_answered_are_reported_not_kept() {
        // Issue 19, finding 2: a client that pipelines requests and never
        // reads a response. Past MAX_PENDING its connection's calls are
        // reported as they complete, unanswered; none is lost, none kept.
        let mut f: Flows<()> = Flows::new(8, Duration::from_secs(60));
        let key = key_of(0x10);
        let p = process();
        let mut ev = Vec::new();
        let s = f.stream(key, &p, Some("openssl"), 0, || (), &mut ev);
        let mut reported = Vec::new();
        for n in 0..MAX_PENDING as u64 + 10 {
            reported.extend(s.request(&key, req(&format!("/{n}")), n, 7, 0));
        }
        assert!(s.unpaired);
        assert_eq!(reported.len(), MAX_PENDING + 10);
        assert!(reported.iter().all(|c| c.response.is_none()));
        assert_eq!(reported[0].request.target, "/0");
        assert!(s.response(&key, 0, resp(200), 999).is_none());
        assert_eq!(f.pending_bytes(), 0);

        // The budget is shared: requests with long targets on several
        // connections stop being kept once all of them hold the budget.
        let mut f: Flows<()> = Flows::new(64, Duration::from_secs(60));
        let long = "/".to_string() + &"x".repeat(60 * 1024);
        let mut reported = 0;
        for conn in 0..16 {
            let key = key_of(conn);
            let s = f.stream(key, &p, Some("openssl"), 0, || (), &mut ev);
            for n in 0..40 {
                reported += s.request(&key, req(&long), n, 7, 0).len();
            }
        }
        assert!(f.pending_bytes() <= PENDING_BUDGET, "{}", f.pending_bytes());
        assert!(reported > 0);
        // Ending the streams gives the budget back.
        let rest = f.sweep(Instant::now(), 99, |_| true, |_, _| Vec::new());
        assert_eq!(reported + rest.len(), 16 * 40);
        assert_eq!(f.pending_bytes(), 0);
    }
}
