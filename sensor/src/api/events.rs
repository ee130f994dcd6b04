//! `sensor.v1.Events`: the live stream (with replay of recent events) and
//! the stored history.

use std::{pin::Pin, sync::Arc};

use sensor_proto::v1::{self as pb, events_server::Events};
use tokio_stream::{Stream, StreamExt, wrappers::BroadcastStream};
use tonic::{Request, Response, Status};

use super::{bus::Bus, convert, filter::Selection, store::Store};

/// History answers at most this many events per request.
pub const HISTORY_CAP: usize = 100_000;

pub struct EventsService {
    pub bus: Arc<Bus>,
    pub store: Option<Store>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl Events for EventsService {
    type SubscribeStream = EventStream;
    type HistoryStream = EventStream;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let r = req.into_inner();
        let sel = Arc::new(Selection::new(
            r.allow.as_ref(),
            r.deny.as_ref(),
            r.min_severity,
        )?);
        let want = r.replay_last as usize;
        // The ring of recent events first, then the store for older ones.
        let cap = if self.store.is_some() {
            HISTORY_CAP
        } else {
            self.bus.recent_capacity()
        };
        if want > cap {
            return Err(Status::invalid_argument(format!(
                "replay_last {want} is more than {cap}: use History (with a time range) for more"
            )));
        }
        // The whole ring when replaying: replay_last counts events that
        // pass the filters, not the last events of any kind.
        let ring_len = if want > 0 {
            self.bus.recent_capacity()
        } else {
            0
        };
        let Some((ring, rx)) = self.bus.subscribe(ring_len) else {
            return Err(Status::unavailable("the sensor is shutting down"));
        };
        let origin = self.bus.origin.clone();
        let metrics = self.metrics.clone();
        let mut replay: Vec<pb::Event> = ring
            .iter()
            .rev()
            .map(|p| convert::published(p, &origin))
            .filter(|e| sel.passes(e))
            .take(want)
            .collect();
        replay.reverse();
        if replay.len() < want
            && let Some(store) = &self.store
        {
            // Older than the ring's oldest: no overlap with what the ring
            // gave, and the receiver has everything after the ring.
            let query = crate::audit::Query {
                before_seq: ring.first().map(|p| p.seq),
                ..narrowing(&sel, None)
            };
            let mut older = store
                .matching(query, sel.clone(), origin.clone(), want - replay.len())
                .await?;
            older.append(&mut replay);
            replay = older;
        }
        let replay: Vec<Result<pb::Event, Status>> = replay.into_iter().map(Ok).collect();
        let live = BroadcastStream::new(rx).filter_map(move |item| match item {
            Ok(p) => {
                let e = convert::published(&p, &origin);
                sel.passes(&e).then_some(Ok(e))
            }
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                metrics.lagged(n);
                Some(Ok(convert::lagged_event(&origin, n)))
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::iter(replay).chain(live),
        )))
    }

    async fn history(
        &self,
        req: Request<pb::HistoryRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let r = req.into_inner();
        let sel = Selection::new(r.allow.as_ref(), r.deny.as_ref(), r.min_severity)?;
        let Some(store) = self.store.clone() else {
            return Err(Status::failed_precondition(
                "the audit store is disabled on this sensor (audit.enabled = false)",
            ));
        };
        let limit = match r.limit as usize {
            0 => HISTORY_CAP,
            n => n.min(HISTORY_CAP),
        };
        let since_ns = r.since.map(|t| {
            (t.seconds.max(0) as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(t.nanos.max(0) as u64)
        });
        let query = narrowing(&sel, since_ns);
        let origin = self.bus.origin.clone();
        let sel = Arc::new(sel);
        let mut events = store
            .matching(query, sel.clone(), origin.clone(), limit)
            .await?;
        // Events not yet written to the store (it is written at least once
        // a second) come from the in-memory ring: those after the newest
        // stored match. Had a later matching one been stored, the store
        // (read newest first) would have returned it.
        let last = events.last().map_or(0, |e| e.seq);
        events.extend(
            self.bus
                .recent_after(last)
                .iter()
                .map(|p| convert::published(p, &origin))
                .filter(|e| since_ns.is_none_or(|s| event_ns(e) >= s))
                .filter(|e| sel.passes(e)),
        );
        let skip = events.len().saturating_sub(limit);
        let out: Vec<Result<pb::Event, Status>> = events.into_iter().skip(skip).map(Ok).collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(out))))
    }
}

/// What SQL can select of `sel` (kinds, a pid, a session, agents) and a
/// start time; the store checks the rest page by page until enough match.
fn narrowing(sel: &Selection, since_unix_ns: Option<u64>) -> crate::audit::Query {
    crate::audit::Query {
        pid: sel.single_pid(),
        agent_session: sel.session().map(str::to_string),
        agent_ids: sel.agent_ids().to_vec(),
        since_unix_ns,
        kinds: sel.kinds(),
        ..Default::default()
    }
}

fn event_ns(e: &pb::Event) -> u64 {
    e.time.as_ref().map_or(0, |t| {
        (t.seconds.max(0) as u64) * 1_000_000_000 + t.nanos.max(0) as u64
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sensor_proto::v1::{self as pb, events_server::Events};
    use tokio_stream::StreamExt;

    use super::*;
    use crate::{
        audit::{Audit, Retention},
        event::{Detail, Event},
        procs::Process,
    };

    fn connect(seq: u64, exe: &str) -> Event {
        Event {
            seq,
            time: String::new(),
            ts_unix_ns: seq * 1000,
            tid: 7,
            process: Arc::new(Process {
                pid: 7,
                start_ticks: 1,
                exe: exe.into(),
                ..Default::default()
            }),
            agent: None,
            pod: None,
            detail: Detail::Connect {
                fd: 3,
                family: "ipv4",
                daddr: "127.0.0.1".parse().unwrap(),
                dport: 80,
                result: 0,
                result_name: "ok".into(),
            },
        }
    }

    async fn seqs(
        svc: &EventsService,
        allow: pb::Filter,
        deny: pb::Filter,
        limit: u32,
    ) -> Vec<u64> {
        let req = pb::HistoryRequest {
            allow: Some(allow),
            deny: Some(deny),
            limit,
            ..Default::default()
        };
        let stream = svc.history(Request::new(req)).await.unwrap().into_inner();
        stream.map(|e| e.unwrap().seq).collect().await
    }

    fn retention() -> Retention {
        Retention {
            max_age: std::time::Duration::from_secs(3600),
            max_bytes: 1 << 30,
        }
    }

    fn service(store: Option<Store>, ring: usize) -> EventsService {
        let origin = crate::api::convert::Origin {
            node: "n".into(),
            boot_id: "b".into(),
        };
        EventsService {
            bus: Bus::new(origin, 64, ring),
            store,
            metrics: Arc::new(crate::metrics::Metrics::new(crate::metrics::Build {
                node: "n",
                kernel: "k",
            })),
        }
    }

    fn published(e: &Event) -> crate::api::bus::Published {
        crate::api::bus::Published {
            seq: e.seq,
            json: e.to_json(),
        }
    }

    async fn replayed(svc: &EventsService, exe: &str, n: u32) -> Vec<u64> {
        let req = pb::SubscribeRequest {
            allow: Some(pb::Filter {
                exe_regex: exe.into(),
                ..Default::default()
            }),
            replay_last: n,
            ..Default::default()
        };
        let stream = svc.subscribe(Request::new(req)).await.unwrap().into_inner();
        stream
            .take(n as usize)
            .map(|e| e.unwrap().seq)
            .collect()
            .await
    }

    /// replay_last counts events that pass the filters: from the ring,
    /// then from the store for what is older than the ring.
    #[tokio::test]
    async fn replay_counts_matching_events_from_ring_then_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let all: Vec<Event> = (1..=40)
            .map(|seq| {
                let exe = if seq <= 10 || seq == 35 {
                    "/usr/bin/python3"
                } else {
                    "/usr/bin/curl"
                };
                connect(seq, exe)
            })
            .collect();
        {
            let mut a = Audit::open(&path, retention()).unwrap();
            for e in &all {
                a.append(e, &e.to_json()).unwrap();
            }
            a.flush().unwrap();
        }
        let svc = service(Some(Store::open(&path, retention()).unwrap()), 16);
        // The ring holds 25..=40 (as seeded at start), one python among them.
        svc.bus.seed(all[24..].iter().map(published));
        assert_eq!(replayed(&svc, "python", 1).await, [35]);
        assert_eq!(replayed(&svc, "python", 4).await, [8, 9, 10, 35]);
        assert_eq!(replayed(&svc, "curl", 2).await, [39, 40]);
        let without_store = service(None, 16);
        without_store.bus.seed(all[24..].iter().map(published));
        let req = pb::SubscribeRequest {
            replay_last: 17,
            ..Default::default()
        };
        let e = without_store
            .subscribe(Request::new(req))
            .await
            .err()
            .unwrap();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }

    /// Thirty python events, then far more curl ones than a page or the
    /// limit: a filter the store cannot apply in SQL must still find the
    /// older matches.
    #[tokio::test]
    async fn history_limits_after_filtering_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let retention = retention();
        {
            let mut a = Audit::open(&path, retention.clone()).unwrap();
            for seq in 1..=5000 {
                let e = connect(
                    seq,
                    if seq <= 30 {
                        "/usr/bin/python3"
                    } else {
                        "/usr/bin/curl"
                    },
                );
                a.append(&e, &e.to_json()).unwrap();
            }
            a.flush().unwrap();
        }
        let svc = service(Some(Store::open(&path, retention).unwrap()), 16);
        let python = pb::Filter {
            exe_regex: "python".into(),
            ..Default::default()
        };
        assert_eq!(
            seqs(&svc, python.clone(), pb::Filter::default(), 10).await,
            (21..=30).collect::<Vec<_>>()
        );
        assert_eq!(seqs(&svc, python, pb::Filter::default(), 0).await.len(), 30);
        let not_curl = pb::Filter {
            exe_regex: "curl".into(),
            ..Default::default()
        };
        assert_eq!(
            seqs(&svc, pb::Filter::default(), not_curl, 5).await,
            (26..=30).collect::<Vec<_>>()
        );
    }

    /// Issue 19, finding 10: reads of the store at once are capped; one
    /// past the cap is refused with a reason, and reads go on once the
    /// running ones end.
    #[tokio::test]
    async fn store_reads_at_once_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let store = Store::open(&path, retention()).unwrap();
        let svc = service(Some(store.clone()), 16);
        let running: Vec<_> = (0..crate::api::store::READERS_MAX)
            .map(|_| store.readers.clone().try_acquire_owned().unwrap())
            .collect();
        let req = || pb::HistoryRequest {
            limit: 1,
            ..Default::default()
        };
        let refused = svc.history(Request::new(req())).await.err().unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("try again"), "{refused:?}");
        let replay = pb::SubscribeRequest {
            replay_last: 5,
            ..Default::default()
        };
        let refused = svc.subscribe(Request::new(replay)).await.err().unwrap();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        drop(running);
        assert!(svc.history(Request::new(req())).await.is_ok());
    }
}
