//! Python HTTP client libraries from PyPI (requests, httpx sync and async):
//! each GET and POST with a credential becomes an api_call; asyncio runs
//! TLS over memory BIOs, which the SSL-pointer keyed streams still follow.

use std::process::Command;

use e2e::{HttpsServer, Sensor, Value, kind, pid, require_root, run, serial, venv_python};

fn calls_of(sensor: &Sensor, child: u32) -> (Value, Value) {
    let get = sensor.wait_for(&format!("GET api_call of {child}"), |v| {
        kind(v) == "api_call" && pid(v) == u64::from(child) && v["method"] == "GET"
    });
    let post = sensor.wait_for(&format!("POST api_call of {child}"), |v| {
        kind(v) == "api_call" && pid(v) == u64::from(child) && v["method"] == "POST"
    });
    (get, post)
}

fn check(client: &str, script: &str) {
    let sensor = Sensor::start();
    let server = HttpsServer::start("127.0.0.1");
    let base = format!("https://127.0.0.1:{}", server.port);
    let (child, status) = run(Command::new(venv_python()).args(["-c", script, &base]));
    assert!(status.success(), "{client}: {status}");
    let (get, post) = calls_of(&sensor, child);
    assert_eq!(
        get["path_template"], "/v1/inventory/{id}",
        "{client}: {get}"
    );
    assert_eq!(get["status"], 200, "{client}: {get}");
    assert_eq!(post["path"], "/v1/orders", "{client}: {post}");
    assert_eq!(post["status"], 201, "{client}: {post}");
    assert!(
        post["request_bytes"].as_u64().unwrap() > 20,
        "{client}: {post}"
    );
    for c in [&get, &post] {
        assert_eq!(c["daddr"], "127.0.0.1", "{client}: {c}");
        assert_eq!(c["dport"], u64::from(server.port), "{client}: {c}");
        let fp = c["credential_fingerprint"].as_str().unwrap_or_default();
        assert!(fp.starts_with("Bearer fp:"), "{client}: {c}");
        assert!(!c.to_string().contains("sdk-secret"), "{client}: {c}");
    }
    assert_eq!(
        server.requests().len(),
        2,
        "{client}: {:?}",
        server.requests()
    );
    sensor.stop();
}

const HEADERS: &str = "{'Authorization': 'Bearer sdk-secret-1'}";

#[test]
fn requests_library() {
    let _g = serial();
    if !require_root("requests_library") {
        return;
    }
    let script = format!(
        // verify=False per request: REQUESTS_CA_BUNDLE in the environment
        // would override a session-wide setting.
        "import sys, requests\nb = sys.argv[1]\ns = requests.Session()\nh = {HEADERS}\ns.get(b + '/v1/inventory/7731', headers=h, verify=False).raise_for_status()\ns.post(b + '/v1/orders', json={{'sku': 'A-1', 'qty': 2}}, headers=h, verify=False).raise_for_status()\n"
    );
    check("requests", &script);
}

#[test]
fn httpx_sync() {
    let _g = serial();
    if !require_root("httpx_sync") {
        return;
    }
    let script = format!(
        "import sys, httpx\nb = sys.argv[1]\nh = {HEADERS}\nwith httpx.Client(verify=False, headers=h) as c:\n    c.get(b + '/v1/inventory/7731').raise_for_status()\n    c.post(b + '/v1/orders', json={{'sku': 'A-1', 'qty': 2}}).raise_for_status()\n"
    );
    check("httpx", &script);
}

#[test]
fn httpx_async_memory_bio() {
    let _g = serial();
    if !require_root("httpx_async_memory_bio") {
        return;
    }
    let script = format!(
        "import sys, asyncio, httpx\nb = sys.argv[1]\nh = {HEADERS}\nasync def main():\n    async with httpx.AsyncClient(verify=False, headers=h) as c:\n        (await c.get(b + '/v1/inventory/7731')).raise_for_status()\n        (await c.post(b + '/v1/orders', json={{'sku': 'A-1', 'qty': 2}})).raise_for_status()\nasyncio.run(main())\n"
    );
    check("httpx.AsyncClient", &script);
}

/// The official OpenAI SDK (httpx, `Accept-Encoding: gzip, deflate`)
/// against a server that gzips its JSON answer, as a CDN in front of a
/// provider does: the usage and the tool call are read from the decoded
/// body (before, the call had no usage).
#[test]
fn a_gzip_encoded_answer_still_gives_usage() {
    let _g = serial();
    if !require_root("a_gzip_encoded_answer_still_gives_usage") {
        return;
    }
    let sensor = Sensor::start();
    let server = HttpsServer::start("127.0.0.1");
    let base = format!("https://127.0.0.1:{}", server.port);
    let script = "import sys, httpx, openai
c = openai.OpenAI(base_url=sys.argv[1] + '/v1', api_key='sk-gzip-secret-1',
                  default_query={'gzip': '1'}, http_client=httpx.Client(verify=False))
r = c.chat.completions.create(model='gpt-e2e', messages=[{'role': 'user', 'content': 'hi'}],
    tools=[{'type': 'function', 'function': {'name': 'place_order', 'parameters': {'type': 'object'}}}])
assert r.usage.prompt_tokens == 1, r
assert r.choices[0].message.tool_calls[0].function.name == 'place_order', r
";
    let (child, status) = run(Command::new(venv_python()).args(["-c", script, &base]));
    assert!(status.success(), "openai: {status}");
    let c = sensor.wait_for("the SDK's call", |v| {
        kind(v) == "api_call" && pid(v) == u64::from(child)
    });
    assert_eq!(c["path"], "/v1/chat/completions?gzip=1", "{c}");
    assert_eq!(c["llm"]["model"], "gpt-e2e", "{c}");
    assert_eq!(c["llm"]["input_tokens"], 1, "{c}");
    assert_eq!(c["llm"]["output_tokens"], 1, "{c}");
    assert_eq!(c["llm"]["tool_calls"][0]["name"], "place_order", "{c}");
    assert_eq!(c["llm"]["truncated"], false, "{c}");
    assert!(!c.to_string().contains("gzip-secret"), "{c}");
    sensor.stop();
}
