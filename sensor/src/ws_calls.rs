//! Calls made over a WebSocket: the messages of an upgraded connection
//! (`http::ws`) paired into requests and answers.
//!
//! A client message whose top-level `type` is `response.create` (the
//! OpenAI Responses API over WebSocket, Codex CLI's first transport; the
//! Realtime API's turn) is a request. It goes to the upgrade's authority
//! and target with the upgrade's credential (the `Authorization` of the
//! `GET`), method `WS`, version `websocket`. Its answer is the server's
//! messages up to the one that ends a response (`response.completed`,
//! `.failed`, `.incomplete`, `.done`, or `error`), kept as a stream of
//! events for the LLM reader: the response objects and finished items,
//! never the text deltas. Other messages are counted, not reported: a
//! WebSocket to an API the sensor does not understand is its upgrade
//! `GET` (status 101) and that connection's bytes.

use crate::{
    agents::llm,
    flows::{RequestSummary, ResponseSummary},
    http::{
        stream::Kept,
        ws::{Deflate, WsConn, WsMessage},
    },
};

/// What one chunk of an upgraded connection gave.
#[derive(Debug)]
pub enum WsParsed {
    Error(String),
    Request(RequestSummary),
    Response(ResponseSummary),
}

/// Event types that end the answer to a `response.create`.
const TERMINAL: [&str; 5] = [
    "response.completed",
    "response.failed",
    "response.incomplete",
    "response.done",
    "error",
];

/// Event types kept from an answer beside the terminal one: the response
/// as created (model) and each finished output item (tool calls).
const KEPT: [&str; 2] = ["response.created", "response.output_item.done"];

/// The answer being gathered.
#[derive(Default)]
struct Answer {
    body: Kept,
    wire_bytes: u64,
}

pub struct WsCalls {
    conn: WsConn,
    /// Where the upgrade went, and with which credential.
    authority: String,
    target: String,
    credential: Option<String>,
    keep_limit: usize,
    /// Requests sent and not yet answered (answers come in order).
    awaiting: usize,
    answer: Answer,
    /// Messages that were neither a request nor part of an answer.
    pub other_messages: u64,
}

impl WsCalls {
    /// The connection `upgrade` asked for, now switched; `extensions` is
    /// the 101's `Sec-WebSocket-Extensions`.
    pub fn new(upgrade: &RequestSummary, extensions: Option<&str>, keep_limit: usize) -> Self {
        Self {
            conn: WsConn::new(Deflate::accepted(extensions), keep_limit),
            authority: upgrade.authority.clone(),
            target: upgrade.target.clone(),
            credential: upgrade.credential_fingerprint.clone(),
            keep_limit,
            awaiting: 0,
            answer: Answer::default(),
            other_messages: 0,
        }
    }

    /// Bytes the client wrote (`writing`) or read; `missing` of them
    /// were not captured after `data`.
    pub fn feed(&mut self, writing: bool, data: &[u8], missing: u64) -> Vec<WsParsed> {
        let mut msgs = self.conn.feed(writing, data);
        if missing > 0 {
            msgs.extend(self.conn.gap(writing, missing));
        }
        msgs.into_iter().filter_map(|m| self.message(m)).collect()
    }

    fn message(&mut self, m: WsMessage) -> Option<WsParsed> {
        let (from_client, payload, truncated, wire_bytes) = match m {
            WsMessage::Error(e) => return Some(WsParsed::Error(e)),
            WsMessage::Close { .. } => return None,
            WsMessage::Data { text: false, .. } => {
                self.other_messages += 1;
                return None;
            }
            WsMessage::Data {
                from_client,
                payload,
                truncated,
                wire_bytes,
                ..
            } => (from_client, payload, truncated, wire_bytes),
        };
        let kind = llm::top_level_string(&payload, "type").unwrap_or_default();
        if from_client {
            if kind != "response.create" {
                self.other_messages += 1;
                return None;
            }
            self.awaiting += 1;
            return Some(WsParsed::Request(RequestSummary {
                method: "WS".to_string(),
                target: self.target.clone(),
                authority: self.authority.clone(),
                http_version: "websocket".to_string(),
                credential_fingerprint: self.credential.clone(),
                body_bytes: wire_bytes,
                head_bytes: 0,
                llm: Some(Box::new(llm::summarize_request(&payload, truncated))),
                db: None,
            }));
        }
        if self.awaiting == 0 {
            self.other_messages += 1;
            return None;
        }
        self.answer.wire_bytes += wire_bytes;
        let terminal = TERMINAL.contains(&kind.as_str());
        if terminal || KEPT.contains(&kind.as_str()) {
            self.keep(&payload, truncated, terminal);
        }
        if !terminal {
            return None;
        }
        self.awaiting -= 1;
        let answer = std::mem::take(&mut self.answer);
        Some(WsParsed::Response(ResponseSummary {
            // No HTTP status: the answer is messages (the event shows none).
            status: 0,
            body_bytes: answer.wire_bytes,
            head_bytes: 0,
            body: Some(answer.body),
            content_type: Some("text/event-stream".to_string()),
            db: None,
        }))
    }

    /// Adds one message to the answer as a server-sent event (`data:`
    /// and the JSON on one line: JSON strings hold no raw newline). Items
    /// fill at most half the limit; the terminal message, which carries
    /// usage, always gets in, in place of the items if need be.
    fn keep(&mut self, payload: &[u8], truncated: bool, terminal: bool) {
        let body = &mut self.answer.body;
        let need = payload.len() + 8;
        let room = if terminal {
            self.keep_limit
        } else {
            self.keep_limit / 2
        };
        if body.bytes.len() + need > room {
            body.truncated = true;
            if !terminal {
                return;
            }
            if need > self.keep_limit {
                body.bytes.clear();
            } else {
                body.bytes.truncate(self.keep_limit - need);
                // Drop the event the cut went into.
                let end = body.bytes.windows(2).rposition(|w| w == b"\n\n");
                body.bytes.truncate(end.map_or(0, |e| e + 2));
            }
        }
        body.truncated |= truncated;
        let room = self.keep_limit.saturating_sub(body.bytes.len() + 8);
        let mut line = Vec::with_capacity(payload.len().min(room) + 8);
        line.extend_from_slice(b"data: ");
        line.extend(
            payload[..payload.len().min(room)]
                .iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
        line.extend_from_slice(b"\n\n");
        // Through the shared budget: all or nothing, an event cut in two
        // would not parse.
        if body.bytes.len() + line.len() <= self.keep_limit {
            body.push(&line, self.keep_limit);
        } else {
            body.truncated = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade() -> RequestSummary {
        RequestSummary {
            method: "GET".into(),
            target: "/v1/responses".into(),
            authority: "127.0.0.1:8443".into(),
            http_version: "HTTP/1.1".into(),
            credential_fingerprint: Some("Bearer fp:0123".into()),
            body_bytes: 0,
            head_bytes: 300,
            llm: None,
            db: None,
        }
    }

    fn text(payload: &str, mask: bool) -> Vec<u8> {
        let p = payload.as_bytes();
        assert!(p.len() < 126);
        let mut f = vec![0x81, p.len() as u8 | if mask { 0x80 } else { 0 }];
        if mask {
            f.extend_from_slice(&[0, 0, 0, 0]);
        }
        f.extend_from_slice(p);
        f
    }

    #[test]
    fn a_response_create_and_its_events_are_one_call() {
        let mut w = WsCalls::new(&upgrade(), None, 256 * 1024);
        let out = w.feed(
            true,
            &text(
                r#"{"type":"response.create","model":"gpt-e2e","input":[]}"#,
                true,
            ),
            0,
        );
        let [WsParsed::Request(r)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(
            (r.method.as_str(), r.target.as_str()),
            ("WS", "/v1/responses")
        );
        assert_eq!(r.credential_fingerprint.as_deref(), Some("Bearer fp:0123"));
        let mut llm = *r.llm.clone().unwrap();
        assert_eq!(llm.model.as_deref(), Some("gpt-e2e"));

        let mut server = Vec::new();
        for e in [
            r#"{"type":"response.created","response":{"model":"gpt-e2e"}}"#,
            r#"{"type":"response.output_text.delta","delta":"Hi"}"#,
            r#"{"type":"response.completed","response":{"usage":{"input_tokens":11,"output_tokens":7}}}"#,
        ] {
            server.extend(text(e, false));
        }
        let out = w.feed(false, &server, 0);
        let [WsParsed::Response(resp)] = &out[..] else {
            panic!("{out:?}")
        };
        let body = resp.body.as_ref().unwrap();
        assert!(!String::from_utf8_lossy(&body.bytes).contains("delta"));
        llm::add_response(
            &mut llm,
            Some((&body.bytes, body.truncated)),
            resp.content_type.as_deref(),
        );
        assert_eq!((llm.input_tokens, llm.output_tokens), (Some(11), Some(7)));
        assert!(llm.stream);
        // Server messages with no call awaiting, and other client
        // messages, are counted only.
        assert!(
            w.feed(false, &text(r#"{"type":"rate_limits"}"#, false), 0)
                .is_empty()
        );
        assert!(
            w.feed(true, &text(r#"{"type":"ping"}"#, true), 0)
                .is_empty()
        );
        assert_eq!(w.other_messages, 2);
    }

    #[test]
    fn the_terminal_event_gets_in_when_items_filled_the_answer() {
        let mut w = WsCalls::new(&upgrade(), None, 200);
        w.feed(true, &text(r#"{"type":"response.create"}"#, true), 0);
        let item = r#"{"type":"response.output_item.done","item":{"type":"message"}}"#;
        for _ in 0..3 {
            assert!(w.feed(false, &text(item, false), 0).is_empty());
        }
        let done = r#"{"type":"response.completed","response":{"usage":{"input_tokens":5}}}"#;
        let out = w.feed(false, &text(done, false), 0);
        let [WsParsed::Response(resp)] = &out[..] else {
            panic!("{out:?}")
        };
        let body = resp.body.as_ref().unwrap();
        assert!(body.truncated);
        assert!(body.bytes.len() <= 200, "{}", body.bytes.len());
        let mut s = llm::LlmSummary::default();
        llm::add_response(&mut s, Some((&body.bytes, true)), Some("text/event-stream"));
        assert_eq!(s.input_tokens, Some(5));
    }
}
