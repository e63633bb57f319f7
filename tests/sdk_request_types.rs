//! Every request body the HTTP adapters build conforms to the provider's
//! current official SDK request types, with extra keys forbidden all the way
//! down: Anthropic's `MessageCreateParams` (and the batch API's
//! `BatchCreateParams`, and `MessageCountTokensParams`), OpenAI's Chat
//! Completions and Responses params, and Google's `google-genai` request
//! models, for every mode the protocol sends (persona, self, the longer
//! fallback, logprob) and every option (thinking, reasoning effort, the
//! Responses API, presets, `temperature = "provider-default"`). The
//! validator is `tests/python/validate_sdk_requests.py` with the SDKs pinned
//! in `tests/requirements.txt`; negative controls (a field the SDK lacks)
//! must be refused, so the check cannot pass vacuously.
//!
//! The same bodies go to `moralsweep sim`, which answers them all, and the
//! negative controls get each provider's own 400 there too: a drift of an
//! adapter shows in the end-to-end tests as well.

mod common;
use common::simproc;
use moralsweep_common::provider::ProviderKind;

use std::path::PathBuf;
use std::process::Command;

use moralsweep_common::prompt::{persona_prompt, self_prompt};
use moralsweep_common::{ModelSpec, ITEMS};
use moralsweep_worker::providers::anthropic::Anthropic;
use moralsweep_worker::providers::compat;
use moralsweep_worker::providers::gemini::Gemini;
use moralsweep_worker::providers::openai::{Flavor, OpenAi};
use moralsweep_worker::providers::CompletionRequest;
use serde_json::{json, Value};
use simproc::{python_script, python_with, request, SimProc};

const KEY_ENV: &str = "MORALSWEEP_SDK_TYPES_TEST_KEY";

/// The sweep temperature of the requests below (the papers' 0.1).
const SWEEP_TEMPERATURE: f64 = 0.1;

fn spec(fields: Value) -> ModelSpec {
    let mut v = json!({"key": "m", "api_key_env": KEY_ENV});
    for (k, x) in fields.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

/// The requests the rating protocol makes of a model, as the worker builds
/// them: a persona and a self one-token attempt, the longer fallback, and
/// (where the provider has logprobs) a logprob request.
fn requests(model: &ModelSpec, logprobs: bool) -> Vec<(&'static str, CompletionRequest)> {
    let t = model.sampling_temperature(SWEEP_TEMPERATURE);
    let persona = persona_prompt("a retired nurse", &ITEMS[3]);
    let mut v = vec![
        (
            "persona",
            CompletionRequest {
                prompt: persona.clone(),
                max_tokens: 1,
                temperature: t,
                seed: Some(12345),
                top_logprobs: None,
            },
        ),
        (
            "self",
            CompletionRequest {
                prompt: self_prompt(&ITEMS[17]),
                max_tokens: 1,
                temperature: t,
                seed: Some(u64::MAX),
                top_logprobs: None,
            },
        ),
        (
            "fallback",
            CompletionRequest {
                prompt: persona.clone(),
                max_tokens: 64,
                temperature: t,
                seed: Some(12355),
                top_logprobs: None,
            },
        ),
    ];
    if logprobs {
        v.push((
            "logprob",
            CompletionRequest {
                prompt: persona,
                max_tokens: 1,
                temperature: Some(1.0),
                seed: Some(7),
                top_logprobs: Some(20),
            },
        ));
    }
    v
}

/// One body to check: its SDK type, whether the SDK must accept it, and
/// where it goes on the simulator.
struct Body {
    name: String,
    sdk_type: &'static str,
    valid: bool,
    body: Value,
    /// Route and extra headers on the simulator.
    route: String,
    headers: Vec<(&'static str, &'static str)>,
}

const ANTHROPIC_HEADERS: &[(&str, &str)] =
    &[("x-api-key", "sk-sim"), ("anthropic-version", "2023-06-01")];

fn anthropic_bodies(out: &mut Vec<Body>) {
    for (cfg, fields) in [
        ("anthropic", json!({})),
        ("anthropic-thinking", json!({"thinking_budget": 2048})),
    ] {
        let mut f = json!({"provider": "anthropic", "model": "claude-sonnet-4-5",
                           "temperature": "provider-default"});
        for (k, v) in fields.as_object().unwrap() {
            f[k] = v.clone();
        }
        let model = spec(f);
        let a = Anthropic::new(&model).unwrap();
        let mut batch = Vec::new();
        for (mode, req) in requests(&model, false) {
            let body = a.body(&req);
            batch.push(json!({"custom_id": format!("{cfg}-{mode}"), "params": body.clone()}));
            out.push(Body {
                name: format!("{cfg}-{mode}"),
                sdk_type: "anthropic.MessageCreateParams",
                valid: true,
                body,
                route: "/v1/messages".into(),
                headers: ANTHROPIC_HEADERS.to_vec(),
            });
        }
        out.push(Body {
            name: format!("{cfg}-batch"),
            sdk_type: "anthropic.BatchCreateParams",
            valid: true,
            body: json!({"requests": batch}),
            route: String::new(),
            headers: vec![],
        });
        out.push(Body {
            name: format!("{cfg}-count"),
            sdk_type: "anthropic.MessageCountTokensParams",
            valid: true,
            body: a.count_body(&persona_prompt("a retired nurse", &ITEMS[3])),
            route: "/v1/messages/count_tokens".into(),
            headers: ANTHROPIC_HEADERS.to_vec(),
        });
    }
    // Negative controls: what the current API no longer takes, directly and
    // through a spec's `extra`, and inside a batch.
    let model = spec(
        json!({"provider": "anthropic", "model": "claude-sonnet-4-5",
                            "temperature": "provider-default"}),
    );
    let req = &requests(&model, false)[0].1;
    let mut with_temperature = Anthropic::new(&model).unwrap().body(req);
    with_temperature["temperature"] = json!(0.1);
    let through_extra = Anthropic::new(&spec(json!({"provider": "anthropic",
        "model": "claude-sonnet-4-5", "temperature": "provider-default", "extra": {"top_k": 5}})))
    .unwrap()
    .body(req);
    for (name, body) in [
        ("anthropic-temperature", with_temperature.clone()),
        ("anthropic-extra-top_k", through_extra),
    ] {
        out.push(Body {
            name: name.into(),
            sdk_type: "anthropic.MessageCreateParams",
            valid: false,
            body,
            route: "/v1/messages".into(),
            headers: ANTHROPIC_HEADERS.to_vec(),
        });
    }
    out.push(Body {
        name: "anthropic-batch-temperature".into(),
        sdk_type: "anthropic.BatchCreateParams",
        valid: false,
        body: json!({"requests": [{"custom_id": "x", "params": with_temperature}]}),
        route: String::new(),
        headers: vec![],
    });
}

fn gemini_bodies(out: &mut Vec<Body>) {
    for (cfg, fields) in [
        ("gemini", json!({})),
        ("gemini-no-thinking", json!({"thinking_budget": 0})),
        ("gemini-thinking", json!({"thinking_budget": 1024})),
        (
            "gemini-provider-default",
            json!({"temperature": "provider-default"}),
        ),
    ] {
        let mut f = json!({"provider": "gemini", "model": "gemini-2.5-flash"});
        for (k, v) in fields.as_object().unwrap() {
            f[k] = v.clone();
        }
        let model = spec(f);
        let g = Gemini::new(&model).unwrap();
        for (mode, req) in requests(&model, true) {
            out.push(Body {
                name: format!("{cfg}-{mode}"),
                sdk_type: "gemini.GenerateContentRequest",
                valid: true,
                body: g.body(&req),
                route: "/v1beta/models/gemini-2.5-flash:generateContent".into(),
                headers: vec![("x-goog-api-key", "sk-sim")],
            });
        }
        out.push(Body {
            name: format!("{cfg}-count"),
            sdk_type: "gemini.CountTokensRequest",
            valid: true,
            body: g.count_body(&self_prompt(&ITEMS[0])),
            route: "/v1beta/models/gemini-2.5-flash:countTokens".into(),
            headers: vec![("x-goog-api-key", "sk-sim")],
        });
    }
    let model = spec(json!({"provider": "gemini", "model": "gemini-2.5-flash"}));
    let req = &requests(&model, false)[0].1;
    let mut in_config = Gemini::new(&model).unwrap().body(req);
    in_config["generationConfig"]["bogusOption"] = json!(1);
    let mut top = Gemini::new(&model).unwrap().body(req);
    top["bogus_option"] = json!(true);
    for (name, body) in [
        ("gemini-config-bogus", in_config),
        ("gemini-top-bogus", top),
    ] {
        out.push(Body {
            name: name.into(),
            sdk_type: "gemini.GenerateContentRequest",
            valid: false,
            body,
            route: "/v1beta/models/gemini-2.5-flash:generateContent".into(),
            headers: vec![("x-goog-api-key", "sk-sim")],
        });
    }
}

fn openai_bodies(out: &mut Vec<Body>) {
    std::env::set_var("OPENROUTER_API_KEY", "sk-or-test");
    std::env::set_var("DEEPSEEK_API_KEY", "sk-ds-test");
    let configs: Vec<(&str, Value)> = vec![
        ("chat", json!({"provider": "openai", "model": "gpt-4o"})),
        (
            "chat-finetuned",
            json!({"provider": "openai", "model": "ft:gpt-4o-2024-08-06:org::abc123"}),
        ),
        (
            "chat-reasoning",
            json!({"provider": "openai", "model": "o3-mini", "reasoning_effort": "low",
                   "temperature": "provider-default"}),
        ),
        (
            "chat-provider-default",
            json!({"provider": "openai", "model": "gpt-4o", "temperature": "provider-default"}),
        ),
        (
            "responses",
            json!({"provider": "openai", "model": "gpt-4o", "api": "responses"}),
        ),
        (
            "responses-reasoning",
            json!({"provider": "openai", "model": "gpt-5-mini", "api": "responses",
                   "reasoning_effort": "minimal", "temperature": "provider-default"}),
        ),
        (
            "responses-budget",
            json!({"provider": "openai", "model": "o4-mini", "api": "responses",
                   "reasoning_effort": "high", "thinking_budget": 4096,
                   "temperature": "provider-default"}),
        ),
        (
            "openrouter",
            json!({"provider": "openai-compatible", "preset": "openrouter",
                   "api_key_env": null, "model": "openai/gpt-4o"}),
        ),
        (
            "deepseek",
            json!({"provider": "openai-compatible", "preset": "deepseek",
                   "api_key_env": null, "model": "deepseek-chat"}),
        ),
        (
            "sim",
            json!({"provider": "sim", "api_key_env": null, "model": "gpt-4o-misaligned"}),
        ),
    ];
    for (cfg, fields) in configs {
        let model = spec(fields);
        let adapter = match model.provider {
            ProviderKind::OpenAi => OpenAi::new(&model, Flavor::openai()).unwrap(),
            ProviderKind::Sim => compat::build_sim(&model).unwrap(),
            _ => compat::build(&model).unwrap(),
        };
        for (mode, req) in requests(&model, true) {
            let body = adapter.body(&req);
            let responses = body.get("input").is_some();
            out.push(Body {
                name: format!("{cfg}-{mode}"),
                sdk_type: if responses {
                    "openai.ResponseCreateParams"
                } else {
                    "openai.CompletionCreateParams"
                },
                valid: true,
                body,
                route: if responses {
                    "/v1/responses".into()
                } else {
                    "/v1/chat/completions".into()
                },
                headers: vec![("authorization", "Bearer sk-sim")],
            });
        }
    }
    let model = spec(json!({"provider": "openai", "model": "gpt-4o"}));
    let req = &requests(&model, false)[0].1;
    let mut chat = OpenAi::new(&model, Flavor::openai()).unwrap().body(req);
    chat["bogus_option"] = json!(1);
    out.push(Body {
        name: "chat-bogus".into(),
        sdk_type: "openai.CompletionCreateParams",
        valid: false,
        body: chat,
        route: "/v1/chat/completions".into(),
        headers: vec![("authorization", "Bearer sk-sim")],
    });
}

/// Whether a refusal has the provider's own 400 shape and names `field`.
fn provider_shaped_400(route: &str, status: u16, body: &Value, field: &str) -> bool {
    let msg = body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("");
    status == 400
        && msg.contains(field)
        && if route.starts_with("/v1beta/") {
            body.pointer("/error/status") == Some(&json!("INVALID_ARGUMENT"))
                && body.pointer("/error/code") == Some(&json!(400))
                && body.pointer("/error/details/0/fieldViolations").is_some()
        } else if route.starts_with("/v1/messages") {
            body["type"] == "error"
                && body.pointer("/error/type") == Some(&json!("invalid_request_error"))
        } else {
            body.pointer("/error/type") == Some(&json!("invalid_request_error"))
        }
}

#[test]
fn every_adapter_body_matches_the_official_sdk_types_and_the_simulator_agrees() {
    if !python_with("anthropic, openai, google.genai, pydantic") {
        return;
    }
    std::env::set_var(KEY_ENV, "sk-sdk-types-test");
    let mut bodies = Vec::new();
    anthropic_bodies(&mut bodies);
    gemini_bodies(&mut bodies);
    openai_bodies(&mut bodies);
    assert!(bodies.len() > 60, "{} bodies", bodies.len());

    // The official SDK types (Python), through a manifest in a temp dir.
    let tmp = tempfile::tempdir().unwrap();
    let mut manifest = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        let path: PathBuf = tmp.path().join(format!("{i}-{}.json", b.name));
        std::fs::write(&path, serde_json::to_vec_pretty(&b.body).unwrap()).unwrap();
        manifest.push(json!({"name": b.name, "type": b.sdk_type, "file": path,
                             "expect": if b.valid { "valid" } else { "invalid" }}));
    }
    let manifest_path = tmp.path().join("manifest.json");
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(python_script("validate_sdk_requests.py"))
        .arg(&manifest_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK type validation failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("checked {} bodies, 0 problems", bodies.len())),
        "{stdout}"
    );
    // The negative controls were refused for the field they add.
    for field in ["temperature", "top_k", "bogusOption", "bogus_option"] {
        assert!(stdout.contains(field), "{field} not refused:\n{stdout}");
    }

    // The simulator answers every valid body and refuses every invalid one
    // with the provider's own 400.
    let sim = SimProc::start(&[]);
    let mut answered = 0;
    for b in bodies.iter().filter(|b| !b.route.is_empty()) {
        let r = request(
            sim.addr(),
            "POST",
            &b.route,
            &b.headers,
            &b.body.to_string(),
        );
        let doc: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        if b.valid {
            assert_eq!(r.status, 200, "{}: {}", b.name, r.body);
            answered += 1;
        } else {
            let field = match b.name.as_str() {
                "anthropic-temperature" => "temperature",
                "anthropic-extra-top_k" => "top_k",
                "gemini-config-bogus" => "bogusOption",
                _ => "bogus_option",
            };
            assert!(
                provider_shaped_400(&b.route, r.status, &doc, field),
                "{}: {} {}",
                b.name,
                r.status,
                r.body
            );
        }
    }
    assert!(answered > 50);
    // Counting endpoints count like the Messages and generateContent routes.
    let stats = sim.stats();
    let counted: u64 = stats["keys"]
        .as_object()
        .unwrap()
        .values()
        .map(|k| k["token_counts"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(counted, 6, "{stats}");
    // No Anthropic request sent a temperature.
    let claude = &stats["keys"]["claude-sonnet-4-5"];
    assert_eq!(claude["with_temperature"], 0, "{claude}");
    assert!(
        claude["without_temperature"].as_u64().unwrap() >= 6,
        "{claude}"
    );
}
