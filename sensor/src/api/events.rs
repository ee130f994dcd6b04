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
        let sel = Selection::new(r.allow.as_ref(), r.deny.as_ref(), r.min_severity)?;
        let cap = self.bus.recent_capacity();
        if r.replay_last as usize > cap {
            return Err(Status::invalid_argument(format!(
                "replay_last {} is more than the {cap} recent events kept in memory: use History for older ones",
                r.replay_last
            )));
        }
        let Some((replay, rx)) = self.bus.subscribe(r.replay_last as usize) else {
            return Err(Status::unavailable("the sensor is shutting down"));
        };
        let origin = self.bus.origin.clone();
        let metrics = self.metrics.clone();
        let replay: Vec<Result<pb::Event, Status>> = replay
            .iter()
            .map(|p| convert::published(p, &origin))
            .filter(|e| sel.passes(e))
            .map(Ok)
            .collect();
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
        // SQL narrows by what it can; the store checks the rest of the
        // selection page by page until `limit` match.
        let query = crate::audit::Query {
            pid: sel.single_pid(),
            agent_session: sel.session().map(str::to_string),
            agent_ids: sel.agent_ids().to_vec(),
            since_unix_ns: since_ns,
            kinds: sel.kinds().to_vec(),
            ..Default::default()
        };
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

    /// Thirty python events, then far more curl ones than a page or the
    /// limit: a filter the store cannot apply in SQL must still find the
    /// older matches.
    #[tokio::test]
    async fn history_limits_after_filtering_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let retention = Retention {
            max_age: std::time::Duration::from_secs(3600),
            max_bytes: 1 << 30,
        };
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
        let origin = crate::api::convert::Origin {
            node: "n".into(),
            boot_id: "b".into(),
        };
        let svc = EventsService {
            bus: Bus::new(origin, 16, 16),
            store: Some(Store::open(&path, retention).unwrap()),
            metrics: Arc::new(crate::metrics::Metrics::new(crate::metrics::Build {
                node: "n",
                kernel: "k",
            })),
        };
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
}
