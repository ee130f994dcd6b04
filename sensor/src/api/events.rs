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
        let query = crate::audit::Query {
            pid: sel.single_pid(),
            agent_session: sel.session().map(str::to_string),
            since_unix_ns: since_ns,
            kinds: sel.kinds().to_vec(),
            limit: Some(limit),
            ..Default::default()
        };
        let origin = self.bus.origin.clone();
        let stored = store.query(query).await?;
        let mut events: Vec<pb::Event> = stored
            .iter()
            .map(|v| convert::from_json(v, &origin))
            .collect();
        // Events not yet written to the store (it is written at least once
        // a second) come from the in-memory ring.
        // Ring events after the newest stored match are not in the store
        // yet: had they been written, the query (newest first) would have
        // returned them.
        let last = events.last().map_or(0, |e| e.seq);
        events.extend(
            self.bus
                .recent_after(last)
                .iter()
                .map(|p| convert::published(p, &origin))
                .filter(|e| since_ns.is_none_or(|s| event_ns(e) >= s)),
        );
        events.retain(|e| sel.passes(e));
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
