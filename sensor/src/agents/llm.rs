//! What an LLM call said, from its captured bodies: model, streaming,
//! token usage, the tool calls the model asked for (OpenAI `tool_calls`,
//! Anthropic `tool_use`, Gemini `functionCall`, Ollama) and the tool
//! results the agent sent back. Plain JSON and server-sent-event streams
//! are read; a body cut short yields what was seen, marked truncated.
//! Argument values are never kept, only their size: they can hold
//! customer data.

use serde::Serialize;
use serde_json::Value;

/// A tool call the model asked for.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ToolCall {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub name: String,
    pub arguments_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LlmSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    pub tool_calls: Vec<ToolCall>,
    /// Tool results the request carried back to the model.
    pub tool_results: u64,
    /// A body was cut short (capture limit or missing bytes).
    pub truncated: bool,
}

fn u(v: &Value, path: &[&str]) -> Option<u64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_u64()
}

fn args_len(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::String(s)) => s.len() as u64,
        Some(Value::Null) | None => 0,
        Some(other) => other.to_string().len() as u64,
    }
}

/// Reads the request body (model, stream flag, tool results sent back).
fn request(s: &mut LlmSummary, body: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        // Cut short (a capture keeps the first `tls.capture_bytes` of each
        // write; Claude Code writes its 50 KB bodies in 16 KB pieces): the
        // top-level fields seen before the cut still count.
        s.model = top_level_string(body, "model");
        return;
    };
    s.model = v["model"].as_str().map(String::from);
    s.stream = v["stream"].as_bool().unwrap_or(false);
    let Some(msgs) = v["messages"].as_array().or(v["contents"].as_array()) else {
        return;
    };
    for m in msgs {
        // OpenAI / Ollama: a message with role "tool".
        if m["role"] == "tool" {
            s.tool_results += 1;
        }
        // Anthropic: content blocks of type tool_result; Gemini:
        // parts with functionResponse.
        for part in m["content"]
            .as_array()
            .into_iter()
            .chain(m["parts"].as_array())
            .flatten()
        {
            if part["type"] == "tool_result" || part.get("functionResponse").is_some() {
                s.tool_results += 1;
            }
        }
    }
}

/// The string value of top-level `key` in a JSON object that may be cut
/// anywhere: scans strings and nesting only, up to the first occurrence at
/// depth 1 (None if the value is not a string or is cut).
pub fn top_level_string(body: &[u8], key: &str) -> Option<String> {
    let mut depth = 0u32;
    let mut i = 0;
    // Whether the string just read at depth 1 was a key equal to `key`.
    let mut wanted_key = false;
    while i < body.len() {
        match body[i] {
            b'"' => {
                let end = string_end(body, i)?;
                let literal = &body[i..=end];
                if wanted_key {
                    return serde_json::from_slice::<String>(literal).ok();
                }
                i = end + 1;
                // A key is followed by ':' (after optional whitespace).
                let rest = body[i..].iter().position(|b| !b.is_ascii_whitespace());
                let is_key = rest.is_some_and(|r| body[i + r] == b':');
                if depth == 1 && is_key {
                    wanted_key = serde_json::from_slice::<String>(literal).is_ok_and(|k| k == key);
                    i += rest.unwrap_or(0) + 1;
                }
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                wanted_key = false;
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b if !b.is_ascii_whitespace() => wanted_key = false,
            _ => {}
        }
        i += 1;
    }
    None
}

/// Index of the quote closing the string that opens at `start`.
fn string_end(body: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < body.len() {
        match body[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// One JSON response object (a whole body or one SSE event).
fn response_object(s: &mut LlmSummary, v: &Value) {
    if let Some(m) = v["model"].as_str().or(v["modelVersion"].as_str()) {
        s.model = Some(m.to_string());
    }
    // Token usage under the providers' names.
    let usage = &v["usage"];
    if let Some(n) = u(usage, &["prompt_tokens"]).or(u(usage, &["input_tokens"])) {
        s.input_tokens = Some(n);
    }
    if let Some(n) = u(usage, &["completion_tokens"]).or(u(usage, &["output_tokens"])) {
        s.output_tokens = Some(n);
    }
    if let Some(n) = u(v, &["usageMetadata", "promptTokenCount"]).or(u(v, &["prompt_eval_count"])) {
        s.input_tokens = Some(n);
    }
    if let Some(n) = u(v, &["usageMetadata", "candidatesTokenCount"]).or(u(v, &["eval_count"])) {
        s.output_tokens = Some(n);
    }
    // Anthropic streams usage inside message_start.
    if let Some(n) = u(v, &["message", "usage", "input_tokens"]) {
        s.input_tokens = Some(n);
    }
    // OpenAI: choices[].message.tool_calls (whole) or choices[].delta.
    // tool_calls (streamed in pieces keyed by index).
    for choice in v["choices"].as_array().into_iter().flatten() {
        let whole = choice["message"]["tool_calls"].as_array();
        let delta = choice["delta"]["tool_calls"].as_array();
        for tc in whole.into_iter().flatten() {
            s.tool_calls.push(ToolCall {
                id: tc["id"].as_str().unwrap_or_default().into(),
                name: tc["function"]["name"].as_str().unwrap_or_default().into(),
                arguments_bytes: args_len(tc["function"].get("arguments")),
            });
        }
        for tc in delta.into_iter().flatten() {
            let index = tc["index"].as_u64().unwrap_or(0) as usize;
            while s.tool_calls.len() <= index.min(255) {
                s.tool_calls.push(ToolCall {
                    id: String::new(),
                    name: String::new(),
                    arguments_bytes: 0,
                });
            }
            let Some(call) = s.tool_calls.get_mut(index) else {
                continue;
            };
            if let Some(id) = tc["id"].as_str() {
                call.id = id.into();
            }
            if let Some(n) = tc["function"]["name"].as_str() {
                call.name.push_str(n);
            }
            call.arguments_bytes += args_len(tc["function"].get("arguments"));
        }
    }
    // OpenAI Responses API (Codex): a streamed event carries the response
    // object (`response.created`, `.completed`: model, usage, output) or
    // one output item (`response.output_item.done`); a whole body is the
    // response itself. A call seen as an item and again in the completed
    // response's output counts once.
    if let Some(r) = v.get("response").filter(|r| r.is_object()) {
        response_object(s, r);
    }
    let items = v["output"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(v.get("item"));
    for item in items.filter(|i| i["type"] == "function_call") {
        let id = item["call_id"].as_str().unwrap_or_default();
        if !id.is_empty() && s.tool_calls.iter().any(|t| t.id == id) {
            continue;
        }
        s.tool_calls.push(ToolCall {
            id: id.into(),
            name: item["name"].as_str().unwrap_or_default().into(),
            arguments_bytes: args_len(item.get("arguments")),
        });
    }
    // Ollama: message.tool_calls[].function {name, arguments (object)}.
    for tc in v["message"]["tool_calls"].as_array().into_iter().flatten() {
        s.tool_calls.push(ToolCall {
            id: String::new(),
            name: tc["function"]["name"].as_str().unwrap_or_default().into(),
            arguments_bytes: args_len(tc["function"].get("arguments")),
        });
    }
    // Anthropic: content[] tool_use blocks, or content_block_start events.
    let blocks = v["content"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(v.get("content_block"));
    for b in blocks {
        if b["type"] == "tool_use" {
            s.tool_calls.push(ToolCall {
                id: b["id"].as_str().unwrap_or_default().into(),
                name: b["name"].as_str().unwrap_or_default().into(),
                arguments_bytes: args_len(
                    b.get("input")
                        .filter(|i| *i != &Value::Object(Default::default())),
                ),
            });
        }
    }
    if v["type"] == "content_block_delta"
        && v["delta"]["type"] == "input_json_delta"
        && let Some(last) = s.tool_calls.last_mut()
    {
        last.arguments_bytes += args_len(v["delta"].get("partial_json"));
    }
    // Gemini: candidates[].content.parts[].functionCall {name, args}.
    for c in v["candidates"].as_array().into_iter().flatten() {
        for part in c["content"]["parts"].as_array().into_iter().flatten() {
            if let Some(fc) = part.get("functionCall") {
                s.tool_calls.push(ToolCall {
                    id: String::new(),
                    name: fc["name"].as_str().unwrap_or_default().into(),
                    arguments_bytes: args_len(fc.get("args")),
                });
            }
        }
    }
}

/// Longest model name kept from a request: names are short, and the
/// summary of a request waits in memory for its response.
const MAX_MODEL: usize = 256;

/// Summarises one exchange with an LLM provider from the kept bodies.
pub fn summarize(
    req: Option<(&[u8], bool)>,
    resp: Option<(&[u8], bool)>,
    resp_content_type: Option<&str>,
) -> LlmSummary {
    let mut s = req.map_or_else(LlmSummary::default, |(body, truncated)| {
        summarize_request(body, truncated)
    });
    add_response(&mut s, resp, resp_content_type);
    s
}

/// What the request body says, read when the request completes so that
/// its body need not wait for the response (issue 19, finding 2: 256
/// pipelined requests kept 64 MiB per connection).
pub fn summarize_request(body: &[u8], truncated: bool) -> LlmSummary {
    let mut s = LlmSummary::default();
    request(&mut s, body);
    s.truncated |= truncated;
    if let Some(m) = &mut s.model
        && m.len() > MAX_MODEL
    {
        let mut cut = MAX_MODEL;
        while !m.is_char_boundary(cut) {
            cut -= 1;
        }
        m.truncate(cut);
        s.truncated = true;
    }
    s
}

/// Adds what the response body says to a request's summary.
pub fn add_response(
    s: &mut LlmSummary,
    resp: Option<(&[u8], bool)>,
    resp_content_type: Option<&str>,
) {
    if let Some((body, truncated)) = resp {
        s.truncated |= truncated;
        let sse = resp_content_type.is_some_and(|c| c.starts_with("text/event-stream"));
        if sse || body.starts_with(b"data:") || body.starts_with(b"event:") {
            s.stream = true;
            for line in body.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if let Some(data) = line.strip_prefix(b"data:")
                    && let Ok(v) = serde_json::from_slice::<Value>(data.trim_ascii())
                {
                    response_object(s, &v);
                }
            }
        } else if let Ok(v) = serde_json::from_slice::<Value>(body) {
            response_object(s, &v);
        } else {
            // Newline-delimited JSON (Ollama streams), or a cut body.
            let mut any = false;
            for line in body.split(|&b| b == b'\n') {
                if let Ok(v) = serde_json::from_slice::<Value>(line.trim_ascii()) {
                    response_object(s, &v);
                    any = true;
                }
            }
            s.truncated |= !any && !body.is_empty();
        }
    }
    s.tool_calls
        .retain(|t| !t.name.is_empty() || !t.id.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Responses API's stream, as Codex reads it: model and usage in
    /// the completed response, a tool call as an item and again in the
    /// output.
    #[test]
    fn a_responses_api_stream_gives_model_usage_and_tool_calls_once() {
        let call = r#"{"type":"function_call","call_id":"call_7","name":"shell","arguments":"{\"command\":[\"ls\"]}"}"#;
        let body = format!(
            "event: response.created\ndata: {{\"type\":\"response.created\",\"response\":{{\"model\":\"gpt-5\",\"output\":[]}}}}\n\n\
             event: response.output_item.done\ndata: {{\"type\":\"response.output_item.done\",\"item\":{call}}}\n\n\
             event: response.completed\ndata: {{\"type\":\"response.completed\",\"response\":{{\"model\":\"gpt-5\",\"output\":[{call}],\"usage\":{{\"input_tokens\":10,\"output_tokens\":5,\"total_tokens\":15}}}}}}\n\n"
        );
        let mut s = LlmSummary::default();
        add_response(
            &mut s,
            Some((body.as_bytes(), false)),
            Some("text/event-stream"),
        );
        assert_eq!(s.model.as_deref(), Some("gpt-5"));
        assert_eq!((s.input_tokens, s.output_tokens), (Some(10), Some(5)));
        assert_eq!(s.tool_calls.len(), 1, "{:?}", s.tool_calls);
        assert_eq!(s.tool_calls[0].name, "shell");
        assert_eq!(s.tool_calls[0].id, "call_7");
        assert!(s.stream && !s.truncated);
    }

    #[test]
    fn openai_json_with_tool_calls() {
        let req = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"},{"role":"tool","tool_call_id":"c0","content":"{}"}],"tools":[]}"#;
        let resp = br#"{"id":"x","model":"gpt-4o-2024","choices":[{"message":{"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"place_order","arguments":"{\"sku\":\"A-1\",\"qty\":2}"}}]}}],"usage":{"prompt_tokens":50,"completion_tokens":9}}"#;
        let s = summarize(
            Some((req, false)),
            Some((resp, false)),
            Some("application/json"),
        );
        assert_eq!(s.model.as_deref(), Some("gpt-4o-2024"));
        assert_eq!((s.input_tokens, s.output_tokens), (Some(50), Some(9)));
        assert_eq!(s.tool_results, 1);
        assert_eq!(
            s.tool_calls,
            [ToolCall {
                id: "call_1".into(),
                name: "place_order".into(),
                arguments_bytes: 21
            }]
        );
        assert!(!s.stream && !s.truncated);
        // Argument values are not kept anywhere.
        assert!(!serde_json::to_string(&s).unwrap().contains("A-1"));
    }

    #[test]
    fn openai_stream_assembles_tool_call_pieces() {
        let resp = b"data: {\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_9\",\"function\":{\"name\":\"issue_\",\"arguments\":\"\"}}]}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"credit\",\"arguments\":\"{\\\"amount\\\":\"}}]}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"50}\"}}]}}],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n\
data: [DONE]\n\n";
        let s = summarize(
            Some((br#"{"model":"gpt-4o","stream":true,"messages":[]}"#, false)),
            Some((resp, false)),
            Some("text/event-stream; charset=utf-8"),
        );
        assert!(s.stream);
        assert_eq!(s.tool_calls.len(), 1);
        assert_eq!(s.tool_calls[0].name, "issue_credit");
        assert_eq!(s.tool_calls[0].id, "call_9");
        assert_eq!(s.tool_calls[0].arguments_bytes, 13);
        assert_eq!(s.output_tokens, Some(3));
    }

    #[test]
    fn anthropic_gemini_and_ollama() {
        let a = br#"{"model":"claude-x","content":[{"type":"text","text":"ok"},{"type":"tool_use","id":"tu_1","name":"lookup_customer","input":{"id":42}}],"usage":{"input_tokens":12,"output_tokens":4}}"#;
        let s = summarize(None, Some((a, false)), None);
        assert_eq!(s.tool_calls[0].name, "lookup_customer");
        assert_eq!(s.tool_calls[0].arguments_bytes, 9);
        assert_eq!(s.input_tokens, Some(12));
        let req = br#"{"model":"claude-x","messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"tu_1","content":"{}"}]}]}"#;
        assert_eq!(summarize(Some((req, false)), None, None).tool_results, 1);
        let g = br#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"drop_table","args":{"t":"orders"}}}]}}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":2},"modelVersion":"gemini-2.0"}"#;
        let s = summarize(None, Some((g, false)), None);
        assert_eq!(s.tool_calls[0].name, "drop_table");
        assert_eq!(s.model.as_deref(), Some("gemini-2.0"));
        let o = b"{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"x\"}}}]},\"done\":false}\n{\"model\":\"llama3\",\"done\":true,\"prompt_eval_count\":20,\"eval_count\":6}\n";
        let s = summarize(None, Some((o, false)), Some("application/x-ndjson"));
        assert_eq!(s.tool_calls[0].name, "get_weather");
        assert_eq!(s.output_tokens, Some(6));
    }

    #[test]
    fn the_model_of_a_request_cut_short() {
        let body = br#"{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"a \"model\": \"x\" {"}],"system":[{"text":"#;
        assert_eq!(
            top_level_string(body, "model").as_deref(),
            Some("claude-sonnet-4-5")
        );
        let s = summarize(Some((body, true)), None, None);
        assert_eq!(s.model.as_deref(), Some("claude-sonnet-4-5"));
        assert!(s.truncated);
        // Nested "model" keys and strings that look like keys do not count;
        // a value that is not a string, or is cut, gives nothing.
        let nested = br#"{"messages":[{"model":"inner"}],"note":"\"model\":\"fake\"","model":"#;
        assert_eq!(top_level_string(nested, "model"), None);
        let later = br#"{"messages":[{"model":"inner"}],"model" : "outer","x":"#;
        assert_eq!(top_level_string(later, "model").as_deref(), Some("outer"));
        assert_eq!(top_level_string(br#"{"model":42,"#, "model"), None);
        assert_eq!(top_level_string(br#"{"model":"clau"#, "model"), None);
        assert_eq!(top_level_string(br#"{"models":"x","#, "model"), None);
    }

    #[test]
    fn cut_bodies_degrade() {
        let resp = br#"{"model":"gpt-4o","choices":[{"message":{"tool_calls":[{"id":"c","function":{"name":"pla"#;
        let s = summarize(
            Some((br#"{"model":"gpt-4o","messages":[]}"#, false)),
            Some((resp, true)),
            Some("application/json"),
        );
        assert!(s.truncated);
        assert_eq!(s.model.as_deref(), Some("gpt-4o"), "from the request");
        assert!(s.tool_calls.is_empty());
        let s = summarize(None, Some((b"\x00\xffgarbage", false)), None);
        assert!(s.truncated);
    }
}
