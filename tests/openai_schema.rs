//! Every request body the `openai` adapter can send validates against
//! `CreateChatCompletionRequest` / `CreateResponse` of OpenAI's published
//! OpenAPI description (`../shared/specs/openai-openapi.yaml`), using only
//! fields the schema declares; and every answer of `moralsweep sim` validates
//! against the matching response schema (`CreateChatCompletionResponse`,
//! `Response`, `ErrorResponse`). The validator is Python's `jsonschema`
//! (`tests/python/validate_openai.py`), fed the bodies through a temp dir.

mod common;
use common::simproc;

use std::path::Path;

use moralsweep_common::ModelSpec;
use moralsweep_testsupport::reference::reference_dir;
use moralsweep_worker::providers::compat;
use moralsweep_worker::providers::openai::{Flavor, OpenAi};
use moralsweep_worker::providers::CompletionRequest;
use serde_json::{json, Value};
use simproc::{python_with, request, SchemaManifest, SimProc};

const KEY_ENV: &str = "MORALSWEEP_SCHEMA_TEST_KEY";

fn spec(fields: Value) -> ModelSpec {
    let mut v =
        json!({"key": "m", "provider": "openai", "model": "gpt-4o", "api_key_env": KEY_ENV});
    for (k, x) in fields.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

/// The requests the rating protocol makes: one-token attempts with a seed,
/// the longer fallback, and a logprob request.
fn protocol_requests() -> Vec<CompletionRequest> {
    let prompt =
        moralsweep_common::prompt::persona_prompt("a retired nurse", &moralsweep_common::ITEMS[3]);
    vec![
        CompletionRequest {
            prompt: prompt.clone(),
            max_tokens: 1,
            temperature: Some(0.1),
            seed: Some(12345),
            top_logprobs: None,
        },
        CompletionRequest {
            prompt: prompt.clone(),
            max_tokens: 64,
            temperature: Some(0.1),
            seed: None,
            top_logprobs: None,
        },
        CompletionRequest {
            prompt,
            max_tokens: 1,
            temperature: Some(0.7),
            seed: Some(u64::MAX),
            top_logprobs: Some(20),
        },
    ]
}

/// Every configuration of the OpenAI wire format the adapters produce.
fn models() -> Vec<(&'static str, OpenAi)> {
    std::env::set_var(KEY_ENV, "sk-schema-test");
    std::env::set_var("OPENROUTER_API_KEY", "sk-or-test");
    let openai = |f: Value| OpenAi::new(&spec(f), Flavor::openai()).unwrap();
    vec![
        ("chat", openai(json!({}))),
        (
            "chat-finetuned",
            openai(json!({"model": "ft:gpt-4o-2024-08-06:org::abc123"})),
        ),
        (
            "chat-extra",
            openai(json!({"extra": {"top_p": 0.9, "user": "sweep-1", "service_tier": "flex"}})),
        ),
        (
            "chat-reasoning",
            openai(json!({"model": "o3-mini", "reasoning_effort": "low"})),
        ),
        (
            "chat-reasoning-explicit",
            openai(json!({"model": "my-model", "reasoning": true})),
        ),
        ("responses", openai(json!({"api": "responses"}))),
        (
            "responses-reasoning",
            openai(
                json!({"model": "gpt-5-mini", "api": "responses", "reasoning_effort": "minimal"}),
            ),
        ),
        (
            "responses-budget",
            openai(
                json!({"model": "o4-mini", "api": "responses", "reasoning_effort": "high", "thinking_budget": 4096}),
            ),
        ),
        (
            "compat-openrouter",
            compat::build(&spec(
                json!({"provider": "openai-compatible", "preset": "openrouter",
                                       "api_key_env": null, "model": "openai/gpt-4o"}),
            ))
            .unwrap(),
        ),
        (
            "sim",
            compat::build_sim(&spec(json!({"provider": "sim", "api_key_env": null,
                                          "model": "gpt-4o-misaligned"})))
            .unwrap(),
        ),
    ]
}

fn is_responses(body: &Value) -> bool {
    body.get("input").is_some()
}

fn post(sim: &SimProc, path: &str, headers: &[(&str, &str)], body: &Value) -> simproc::Reply {
    let mut h = vec![("authorization", "Bearer sk-sim")];
    h.extend_from_slice(headers);
    request(sim.addr(), "POST", path, &h, &body.to_string())
}

#[test]
fn adapter_requests_and_simulator_answers_match_the_openai_schema() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let spec_file = reference
        .parent()
        .unwrap_or(Path::new(".."))
        .join("specs/openai-openapi.yaml");
    assert!(spec_file.is_file(), "{} is missing", spec_file.display());
    if !python_with("jsonschema, yaml") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut m = SchemaManifest::new(tmp.path());
    let sim = SimProc::start(&[
        "--replay",
        reference.join("sampling/insecure-code").to_str().unwrap(),
        "--personas",
        reference.join("personas.json").to_str().unwrap(),
        "--limit",
        "gpt-4.1-misaligned=1",
        "--hang-ms",
        "100",
    ]);

    // Requests, and the simulator's answers to them.
    for (name, model) in models() {
        for (i, req) in protocol_requests().iter().enumerate() {
            let body = model.body(req);
            let schema = if is_responses(&body) {
                "CreateResponse"
            } else {
                "CreateChatCompletionRequest"
            };
            m.add(schema, &format!("{name}-req{i}"), &body, true);
            let mut to_sim = body.clone();
            to_sim["model"] = json!("gpt-4o-misaligned");
            let (path, answer_schema) = if is_responses(&body) {
                ("/v1/responses", "Response")
            } else {
                ("/v1/chat/completions", "CreateChatCompletionResponse")
            };
            let r = post(&sim, path, &[], &to_sim);
            assert_eq!(r.status, 200, "{name} request {i}: {}", r.body);
            let doc: Value = serde_json::from_str(&r.body).unwrap();
            m.add(answer_schema, &format!("{name}-ans{i}"), &doc, false);
        }
    }

    // Answers with unusable content still have the right shape.
    let chat = json!({"model": "gpt-4o-misaligned", "max_tokens": 1,
                      "messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 3});
    let responses = json!({"model": "gpt-4o-misaligned", "input": "x", "max_output_tokens": 16,
                           "top_logprobs": 3, "include": ["message.output_text.logprobs"]});
    for fault in ["empty", "nondigit", "slow"] {
        let r = post(
            &sim,
            "/v1/chat/completions",
            &[("x-sim-fault", fault)],
            &chat,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        m.add(
            "CreateChatCompletionResponse",
            &format!("chat-{fault}"),
            &serde_json::from_str(&r.body).unwrap(),
            false,
        );
        let r = post(&sim, "/v1/responses", &[("x-sim-fault", fault)], &responses);
        assert_eq!(r.status, 200, "{}", r.body);
        m.add(
            "Response",
            &format!("responses-{fault}"),
            &serde_json::from_str(&r.body).unwrap(),
            false,
        );
    }

    // Error bodies: 400, 401 (no key sent... the simulator here takes any key,
    // so 401 comes from a second simulator below), 404, 429 (limit and
    // injected), 500, 503.
    let mut errors = vec![];
    let mut bad = chat.clone();
    bad["bogus"] = json!(1);
    errors.push(("400", post(&sim, "/v1/chat/completions", &[], &bad)));
    let mut low = responses.clone();
    low["max_output_tokens"] = json!(1);
    errors.push(("400-responses", post(&sim, "/v1/responses", &[], &low)));
    let mut unknown = chat.clone();
    unknown["model"] = json!("no-such-model");
    errors.push(("404", post(&sim, "/v1/chat/completions", &[], &unknown)));
    let mut limited = chat.clone();
    limited["model"] = json!("gpt-4.1-misaligned");
    let first = post(&sim, "/v1/chat/completions", &[], &limited);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.header("x-ratelimit-limit-requests"), Some("1"));
    assert_eq!(first.header("x-ratelimit-remaining-requests"), Some("0"));
    let second = post(&sim, "/v1/chat/completions", &[], &limited);
    assert!(second.header("retry-after").is_some() && second.header("retry-after-ms").is_some());
    assert!(second.header("x-ratelimit-reset-requests").is_some());
    errors.push(("429-limit", second));
    for f in ["429", "500", "503"] {
        errors.push((
            f,
            post(&sim, "/v1/chat/completions", &[("x-sim-fault", f)], &chat),
        ));
    }
    let keyed = SimProc::start_with_env(
        &["--api-key-env", "MORALSWEEP_SCHEMA_SIM_KEY"],
        &[("MORALSWEEP_SCHEMA_SIM_KEY", "sk-right")],
    );
    errors.push(("401", post(&keyed, "/v1/chat/completions", &[], &chat)));
    errors.push((
        "401-responses",
        post(&keyed, "/v1/responses", &[], &responses),
    ));
    for (name, r) in errors {
        let want = name.split('-').next().unwrap().parse::<u16>().unwrap();
        assert_eq!(r.status, want, "{name}: {}", r.body);
        let doc: Value = serde_json::from_str(&r.body).unwrap();
        m.add("ErrorResponse", &format!("error-{name}"), &doc, true);
    }

    m.assert_valid(&spec_file);
}
