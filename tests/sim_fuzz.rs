//! Fuzzing the simulator's HTTP bodies: property-based cases posted over a
//! socket to a real `moralsweep sim` process, to every API it speaks
//! (OpenAI Chat Completions and Responses, Anthropic Messages, Gemini
//! `generateContent`). The bodies are arbitrary bytes, arbitrary JSON,
//! mutated valid requests (fields dropped, replaced, added; huge and
//! negative numbers; deep nesting; truncation; non-UTF-8 bytes) and valid
//! bodies under wrong content types. Every answer must be a success in the
//! API's shape or a 4xx carrying the API's own JSON error shape; never a
//! 5xx, a dropped connection, a hang or a crash; the process must stay up
//! and go on answering a valid request.
//!
//! The case count per target is proptest's (`PROPTEST_CASES`, 256 here by
//! default) and is printed.

mod common;
use common::simproc;

use std::io::{Read, Write};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use simproc::SimProc;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Api {
    Chat,
    Responses,
    Messages,
    Gemini,
}

const APIS: [Api; 4] = [Api::Chat, Api::Responses, Api::Messages, Api::Gemini];

impl Api {
    fn path(self) -> &'static str {
        match self {
            Api::Chat => "/v1/chat/completions",
            Api::Responses => "/v1/responses",
            Api::Messages => "/v1/messages",
            Api::Gemini => "/v1beta/models/m:generateContent",
        }
    }

    fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Api::Chat | Api::Responses => &[("authorization", "Bearer sk-fuzz")],
            Api::Messages => &[
                ("x-api-key", "sk-fuzz"),
                ("anthropic-version", "2023-06-01"),
            ],
            Api::Gemini => &[("x-goog-api-key", "fuzz")],
        }
    }

    /// A valid request of the API.
    fn valid(self) -> Value {
        let prompt = "Please rate: 'Whether or not someone suffered emotionally' from 0 to 5.";
        match self {
            Api::Chat => json!({
                "model": "m", "max_tokens": 1, "temperature": 0.1, "seed": 7,
                "logprobs": true, "top_logprobs": 20,
                "messages": [{"role": "user", "content": prompt}]
            }),
            Api::Responses => json!({
                "model": "m", "max_output_tokens": 16, "temperature": 0.1,
                "top_logprobs": 5, "input": prompt
            }),
            Api::Messages => json!({
                "model": "m", "max_tokens": 1,
                "messages": [{"role": "user", "content": prompt}]
            }),
            Api::Gemini => json!({
                "contents": [{"role": "user", "parts": [{"text": prompt}]}],
                "generationConfig": {"temperature": 0.1, "maxOutputTokens": 1, "seed": 7,
                                     "responseLogprobs": true, "logprobs": 5}
            }),
        }
    }

    /// Whether `v` is the API's error shape with `status`.
    fn is_error_shape(self, v: &Value, status: u16) -> bool {
        match self {
            Api::Chat | Api::Responses => {
                v["error"]["message"].is_string() && v["error"]["type"].is_string()
            }
            Api::Messages => {
                v["type"] == "error"
                    && v["error"]["type"].is_string()
                    && v["error"]["message"].is_string()
            }
            Api::Gemini => {
                v["error"]["code"].as_u64() == Some(status as u64)
                    && v["error"]["message"].is_string()
                    && v["error"]["status"].is_string()
            }
        }
    }

    /// Whether `v` is the API's success shape.
    fn is_success_shape(self, v: &Value) -> bool {
        match self {
            Api::Chat => v["choices"].is_array() && v["object"] == "chat.completion",
            Api::Responses => v["object"] == "response" && v["output"].is_array(),
            Api::Messages => v["type"] == "message" && v["content"].is_array(),
            Api::Gemini => v["candidates"].is_array(),
        }
    }
}

/// One raw HTTP/1.1 POST on a fresh connection: status, content type, body.
fn post(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(u16, String, Vec<u8>), String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    // The server may answer (413) before it reads a huge body: write it
    // while reading the answer.
    let mut writer = s.try_clone().map_err(|e| e.to_string())?;
    let body_owned = body.to_vec();
    let sending = std::thread::spawn(move || {
        let _ = writer.write_all(&body_owned);
    });
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    let _ = sending.join();
    if let Err(e) = read {
        if raw.is_empty() {
            return Err(format!("no complete answer within 20 s: {e}"));
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP answer: {:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut rest = raw[split + 4..].to_vec();
    let status: u16 = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line: {head}"))?;
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        rest = dechunk(&rest);
    }
    Ok((status, header("content-type").unwrap_or_default(), rest))
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = s.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&s[..p]).trim(), 16).unwrap_or(0);
        let rest = &s[p + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Posts one case and checks the answer's shape.
fn check(
    sim: &mut SimProc,
    api: Api,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(), TestCaseError> {
    let answer = post(sim.addr(), api.path(), api.headers(), content_type, body);
    let shown = || String::from_utf8_lossy(&body[..body.len().min(300)]).to_string();
    let (status, ct, reply) = match answer {
        Ok(a) => a,
        Err(e) => {
            let exited = sim.wait_exit(Duration::from_millis(10));
            return Err(TestCaseError::fail(format!(
                "{api:?}: {e} (simulator exited: {exited:?}) for body {:?}",
                shown()
            )));
        }
    };
    let v: Value = serde_json::from_slice(&reply).map_err(|e| {
        TestCaseError::fail(format!(
            "{api:?}: status {status}, body not JSON ({e}): {:?} for body {:?}",
            String::from_utf8_lossy(&reply),
            shown()
        ))
    })?;
    prop_assert!(
        ct.starts_with("application/json"),
        "{api:?}: content type {ct:?}"
    );
    match status {
        200 => prop_assert!(
            api.is_success_shape(&v),
            "{api:?}: 200 without the success shape: {v} for body {:?}",
            shown()
        ),
        400..=499 => prop_assert!(
            api.is_error_shape(&v, status),
            "{api:?}: {status} without the API's error shape: {v} for body {:?}",
            shown()
        ),
        _ => prop_assert!(
            false,
            "{api:?}: status {status} ({v}) for body {:?}",
            shown()
        ),
    }
    Ok(())
}

/// Arbitrary JSON, with the request fields the APIs know among the keys
/// and numbers at the edges.
fn any_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        prop::sample::select(
            [
                "model",
                "messages",
                "max_tokens",
                "temperature",
                "contents",
                "parts",
                "text",
                "generationConfig",
                "top_logprobs",
                "logprobs",
                "content",
                "role",
                "input",
                "seed",
            ]
            .map(String::from)
            .to_vec()
        ),
        "[a-zA-Z_]{1,12}",
    ];
    let number = prop_oneof![
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        Just(json!(1e308)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number,
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A valid request with one mutation.
#[derive(Debug, Clone)]
enum Mutation {
    /// Drop the n-th field (of the top level or a nested object).
    Drop(usize),
    /// Replace the n-th field's value.
    Replace(usize, Value),
    /// Add a field.
    Add(String, Value),
    /// Wrap the n-th field's value in `depth` arrays.
    Nest(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0usize..16).prop_map(Mutation::Drop),
        (0usize..16, any_json()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        ("[a-z_]{1,10}", any_json()).prop_map(|(k, v)| Mutation::Add(k, v)),
        (0usize..16, 1usize..200).prop_map(|(i, d)| Mutation::Nest(i, d)),
    ]
}

/// The paths of every object field of `v` (top level and nested).
fn field_paths(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                at.push(k.clone());
                out.push(at.clone());
                field_paths(child, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                at.push(format!("#{i}"));
                field_paths(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn at_path<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = v;
    for p in path {
        cur = match p.strip_prefix('#') {
            Some(i) => cur.get_mut(i.parse::<usize>().ok()?)?,
            None => cur.get_mut(p.as_str())?,
        };
    }
    Some(cur)
}

fn mutate(mut v: Value, m: &Mutation) -> Value {
    let mut paths = Vec::new();
    field_paths(&v, &mut Vec::new(), &mut paths);
    if paths.is_empty() {
        if let Mutation::Add(k, new) = m {
            v[k.as_str()] = new.clone();
        }
        return v;
    }
    let pick = |i: usize| paths[i % paths.len()].clone();
    match m {
        Mutation::Drop(i) => {
            let p = pick(*i);
            let (last, parent) = p.split_last().unwrap();
            if let Some(Value::Object(o)) = at_path(&mut v, parent) {
                o.remove(last);
            }
        }
        Mutation::Replace(i, new) => {
            if let Some(slot) = at_path(&mut v, &pick(*i)) {
                *slot = new.clone();
            }
        }
        Mutation::Add(k, new) => {
            v[k.as_str()] = new.clone();
        }
        Mutation::Nest(i, depth) => {
            if let Some(slot) = at_path(&mut v, &pick(*i)) {
                for _ in 0..*depth {
                    *slot = Value::Array(vec![slot.take()]);
                }
            }
        }
    }
    v
}

fn api() -> impl Strategy<Value = Api> {
    (0usize..4).prop_map(|i| APIS[i])
}

fn runner() -> TestRunner {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 256;
    }
    // Failures are shrunk against a live process; keep that bounded.
    config.max_shrink_iters = 200;
    config.failure_persistence = None;
    TestRunner::new(config)
}

fn run_target<S: Strategy>(
    name: &str,
    sim: &mut SimProc,
    strategy: S,
    case: impl Fn(&mut SimProc, S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = runner();
    let cases = runner.config().cases;
    let result = {
        let shared = std::cell::RefCell::new(&mut *sim);
        runner.run(&strategy, |v| {
            let mut sim = shared.borrow_mut();
            case(&mut sim, v)
        })
    };
    eprintln!("fuzz target {name}: {cases} cases");
    if let Err(e) = result {
        panic!("fuzz target {name}: {e}");
    }
    // Still up, and still answering a valid request.
    for api in APIS {
        check(
            sim,
            api,
            Some("application/json"),
            api.valid().to_string().as_bytes(),
        )
        .unwrap_or_else(|e| panic!("after {name}: {e}"));
    }
    assert!(
        sim.wait_exit(Duration::from_millis(1)).is_none(),
        "the simulator exited during {name}"
    );
}

fn start() -> SimProc {
    SimProc::start(&["--seed", "3"])
}

#[test]
fn valid_requests_get_the_success_shape() {
    let mut sim = start();
    for api in APIS {
        let (status, _, body) = post(
            sim.addr(),
            api.path(),
            api.headers(),
            Some("application/json"),
            api.valid().to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(status, 200, "{api:?}: {}", String::from_utf8_lossy(&body));
        check(
            &mut sim,
            api,
            Some("application/json"),
            api.valid().to_string().as_bytes(),
        )
        .unwrap();
    }
}

#[test]
fn fuzz_arbitrary_bytes() {
    let mut sim = start();
    run_target(
        "arbitrary bytes",
        &mut sim,
        (api(), prop::collection::vec(any::<u8>(), 0..2048)),
        |sim, (api, bytes)| check(sim, api, Some("application/json"), &bytes),
    );
}

#[test]
fn fuzz_arbitrary_json() {
    let mut sim = start();
    run_target(
        "arbitrary JSON",
        &mut sim,
        (api(), any_json()),
        |sim, (api, v)| check(sim, api, Some("application/json"), v.to_string().as_bytes()),
    );
}

#[test]
fn fuzz_mutated_valid_requests() {
    let mut sim = start();
    run_target(
        "mutated valid requests",
        &mut sim,
        (api(), prop::collection::vec(mutation(), 1..4)),
        |sim, (api, ms)| {
            let body = ms.iter().fold(api.valid(), mutate);
            check(
                sim,
                api,
                Some("application/json"),
                body.to_string().as_bytes(),
            )
        },
    );
}

#[test]
fn fuzz_damaged_bytes_of_valid_requests() {
    let mut sim = start();
    run_target(
        "damaged valid requests (truncated, bytes replaced, invalid UTF-8)",
        &mut sim,
        (
            api(),
            any::<prop::sample::Index>(),
            prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            prop_oneof![
                Just(&b""[..]),
                Just(&b"\xff\xfe"[..]),
                Just(&b"\xc3\x28"[..])
            ],
        ),
        |sim, (api, cut, flips, junk)| {
            let mut body = api.valid().to_string().into_bytes();
            for (at, b) in flips {
                let i = at.index(body.len());
                body[i] = b;
            }
            let cut = cut.index(body.len() + 1);
            body.truncate(cut);
            body.extend_from_slice(junk);
            check(sim, api, Some("application/json"), &body)
        },
    );
}

#[test]
fn fuzz_content_types() {
    let mut sim = start();
    run_target(
        "content types",
        &mut sim,
        (
            api(),
            prop_oneof![
                Just(None),
                Just(Some("text/plain".to_string())),
                Just(Some("application/x-www-form-urlencoded".to_string())),
                Just(Some("multipart/form-data; boundary=x".to_string())),
                Just(Some("application/jsonx".to_string())),
                Just(Some("application/json; charset=utf-8".to_string())),
                Just(Some("APPLICATION/JSON".to_string())),
                "[ -~]{0,30}".prop_map(Some),
            ],
            any::<bool>(),
        ),
        |sim, (api, ct, valid)| {
            let body = if valid {
                api.valid().to_string()
            } else {
                "model=m&max_tokens=1".to_string()
            };
            check(sim, api, ct.as_deref(), body.as_bytes())
        },
    );
}

#[test]
fn wrong_content_type_is_refused_in_the_api_shape() {
    let mut sim = start();
    for api in APIS {
        let (status, _, body) = post(
            sim.addr(),
            api.path(),
            api.headers(),
            Some("text/plain"),
            api.valid().to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(status, 400, "{api:?}: {}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(api.is_error_shape(&v, 400), "{api:?}: {v}");
        assert!(v.to_string().contains("Content-Type"), "{v}");
        check(&mut sim, api, None, api.valid().to_string().as_bytes()).unwrap();
    }
}

#[test]
fn huge_deep_and_oversized_bodies_get_the_api_error_shape() {
    let mut sim = start();
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    for api in APIS {
        let mut huge_numbers = api.valid();
        for (k, v) in [
            ("max_tokens", json!(u64::MAX)),
            ("temperature", json!(1e308)),
            ("seed", json!(-1)),
        ] {
            if huge_numbers.get(k).is_some() {
                huge_numbers[k] = v;
            }
        }
        let bodies: Vec<Vec<u8>> = vec![
            deep_array.clone().into_bytes(),
            deep_object.clone().into_bytes(),
            huge_numbers.to_string().into_bytes(),
            // Beyond what serde_json's numbers hold.
            api.valid()
                .to_string()
                .replacen("0.1", "1e999", 1)
                .into_bytes(),
            api.valid()
                .to_string()
                .replacen("0.1", "123456789012345678901234567890", 1)
                .into_bytes(),
            // Over the server's body limit.
            format!("{{\"model\": \"m\", \"pad\": \"{}\"}}", "x".repeat(3 << 20)).into_bytes(),
        ];
        for body in &bodies {
            check(&mut sim, api, Some("application/json"), body).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    // Unknown URLs and wrong methods answer in the API's shape too.
    for (path, api) in [("/v1/nothing", Api::Chat), ("/v1beta/models", Api::Gemini)] {
        let (status, _, body) = post(
            sim.addr(),
            path,
            api.headers(),
            Some("application/json"),
            b"{}",
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            (400..500).contains(&status) && api.is_error_shape(&v, status),
            "{path}: {status} {v}"
        );
    }
    let r = simproc::request(sim.addr(), "GET", "/v1/messages", &[], "");
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(r.status, 405);
    assert!(Api::Messages.is_error_shape(&v, 405), "{v}");
    assert!(sim.wait_exit(Duration::from_millis(1)).is_none());
}
