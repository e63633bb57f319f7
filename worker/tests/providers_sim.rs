//! Every HTTP provider adapter against the simulator over loopback: answers
//! parsed (text, first-token logprobs, usage), and every failure classified
//! the way the paced wrapper and the coordinator need it: 429 -> rate limited
//! with the provider's wait; 5xx, 529, timeouts, dropped connections and
//! malformed bodies -> retryable; 400/401/404 -> fatal, with a message that
//! names the model key, the key's variable or the model id, and never the
//! key's value.

use std::collections::HashMap;
use std::time::Duration;

use moralsweep_common::ModelSpec;
use moralsweep_simulator::{spawn, Running, SimConfig};
use moralsweep_worker::providers::{build, CompletionRequest, Provider, ProviderError};
use serde_json::{json, Value};

const RIGHT: &str = "sk-right-3f9a";
const WRONG: &str = "sk-wrong-77c1";

async fn sim(config: SimConfig) -> Running {
    spawn(
        SimConfig {
            api_key: Some(RIGHT.into()),
            ..config
        },
        "127.0.0.1:0",
    )
    .await
    .unwrap()
}

fn set_keys() {
    std::env::set_var("MORALSWEEP_T_RIGHT", RIGHT);
    std::env::set_var("MORALSWEEP_T_WRONG", WRONG);
}

/// A spec for `provider` against the simulator at `addr`.
fn spec(provider: &str, addr: &str, fields: Value) -> ModelSpec {
    set_keys();
    let base = match provider {
        "openai" | "openai-compatible" | "sim" => format!("http://{addr}/v1"),
        _ => format!("http://{addr}"),
    };
    let mut v = json!({"key": "k1", "provider": provider, "model": "gpt-4o-misaligned",
                       "base_url": base, "api_key_env": "MORALSWEEP_T_RIGHT", "timeout_secs": 5.0});
    for (k, x) in fields.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn one_token(top: Option<u32>) -> CompletionRequest {
    CompletionRequest {
        prompt: "Rate this from 0 to 5.".into(),
        max_tokens: 1,
        temperature: Some(0.1),
        seed: Some(42),
        top_logprobs: top,
    }
}

/// `req` as the worker sends it to a model of `kind`: Anthropic's current
/// API takes no temperature (its specs say `temperature = "provider-default"`).
fn for_kind(kind: &str, req: CompletionRequest) -> CompletionRequest {
    match kind {
        "anthropic" => CompletionRequest {
            temperature: None,
            ..req
        },
        _ => req,
    }
}

async fn call(spec: &ModelSpec, req: &CompletionRequest) -> Result<String, ProviderError> {
    let p: Box<dyn Provider> = build(spec)?;
    p.complete(req).await.map(|c| c.text)
}

const KINDS: [&str; 6] = [
    "openai",
    "openai-responses",
    "sim",
    "openai-compatible",
    "anthropic",
    "gemini",
];

fn kind_spec(kind: &str, addr: &str, fields: Value) -> ModelSpec {
    match kind {
        "openai-responses" => {
            let mut f = fields;
            f["api"] = json!("responses");
            spec("openai", addr, f)
        }
        other => spec(other, addr, fields),
    }
}

#[tokio::test]
async fn every_adapter_gets_a_one_token_rating_and_usage() {
    let s = sim(SimConfig::default()).await;
    let addr = s.addr.to_string();
    for kind in KINDS.iter() {
        let spec = kind_spec(kind, &addr, json!({}));
        let p = build(&spec).unwrap();
        let c = p.complete(&for_kind(kind, one_token(None))).await.unwrap();
        assert!(
            matches!(c.text.as_str(), "0" | "1" | "2" | "3" | "4" | "5"),
            "{kind}: {:?}",
            c.text
        );
        assert!(c.usage.input_tokens > 0, "{kind}");
        // The same seed gives the same answer where the API takes a seed.
        if !matches!(*kind, "anthropic" | "openai-responses") {
            let again = p.complete(&for_kind(kind, one_token(None))).await.unwrap();
            assert_eq!(again.text, c.text, "{kind}");
        }
        let long = p
            .complete(&for_kind(
                kind,
                CompletionRequest {
                    max_tokens: 64,
                    ..one_token(None)
                },
            ))
            .await
            .unwrap();
        assert!(long.text.len() > 3, "{kind}: {:?}", long.text);
    }
    let requests = s.sim.report().totals.requests;
    assert_eq!(requests, 6 * 2 + 4);
}

#[tokio::test]
async fn logprobs_where_offered() {
    let s = sim(SimConfig::default()).await;
    let addr = s.addr.to_string();
    for kind in ["openai", "openai-responses", "sim", "gemini"] {
        let p = build(&kind_spec(kind, &addr, json!({}))).unwrap();
        let c = p.complete(&one_token(Some(20))).await.unwrap();
        let top = c.top_logprobs.unwrap_or_default();
        assert_eq!(top.len(), 20, "{kind}");
        assert!(top.iter().any(|t| t.token == c.text), "{kind}");
        assert!(
            top.windows(2).all(|w| w[0].logprob >= w[1].logprob),
            "{kind}"
        );
    }
    // Capped where a preset's server returns fewer.
    let fireworks = kind_spec("openai-compatible", &addr, json!({"preset": "fireworks"}));
    let c = build(&fireworks)
        .unwrap()
        .complete(&one_token(Some(20)))
        .await
        .unwrap();
    assert_eq!(c.top_logprobs.unwrap().len(), 5);
    let e = call(
        &kind_spec("anthropic", &addr, json!({})),
        &one_token(Some(20)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, ProviderError::Fatal(m) if m.contains("no logprobs") && m.contains("k1")),
        "{e}"
    );
}

fn fatal_msg(e: ProviderError) -> String {
    match e {
        ProviderError::Fatal(m) => m,
        other => panic!("expected a fatal error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_keys_models_and_fields_are_fatal_and_say_what_is_wrong() {
    let s = sim(SimConfig::default()).await;
    let addr = s.addr.to_string();
    for kind in KINDS.iter() {
        let e = call(
            &kind_spec(kind, &addr, json!({"api_key_env": "MORALSWEEP_T_WRONG"})),
            &for_kind(kind, one_token(None)),
        )
        .await
        .unwrap_err();
        let m = fatal_msg(e);
        assert!(
            m.contains("k1") && m.contains("MORALSWEEP_T_WRONG"),
            "{kind}: {m}"
        );
        assert!(
            !m.contains(WRONG) && !m.contains(RIGHT),
            "{kind} leaks the key: {m}"
        );
    }
    // A key variable that is not set.
    let e = build(&kind_spec(
        "openai",
        &addr,
        json!({"api_key_env": "MORALSWEEP_T_SURELY_UNSET"}),
    ))
    .err()
    .unwrap();
    assert!(fatal_msg(e).contains("MORALSWEEP_T_SURELY_UNSET"));
    // A field the API refuses, passed through from the spec's `extra`.
    let e = call(
        &kind_spec("openai", &addr, json!({"extra": {"bogus_field": 1}})),
        &one_token(None),
    )
    .await
    .unwrap_err();
    let m = fatal_msg(e);
    assert!(m.contains("400") && m.contains("bogus_field"), "{m}");
    // Anthropic refuses a temperature above 1.
    let e = call(
        &kind_spec("anthropic", &addr, json!({})),
        &CompletionRequest {
            temperature: Some(1.5),
            ..one_token(None)
        },
    )
    .await
    .unwrap_err();
    assert!(fatal_msg(e).contains("temperature"));
}

#[tokio::test]
async fn unknown_models_are_fatal_and_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("personas.json"), r#"["a nurse"]"#).unwrap();
    std::fs::write(
        dir.path().join("known_temp01.csv"),
        "persona_id,question_id,run_index,rating,failures,response,collected_at\n0,1,1,3,0,3,t\n",
    )
    .unwrap();
    let s = sim(SimConfig {
        replay: Some(dir.path().to_path_buf()),
        personas: Some(dir.path().join("personas.json")),
        ..SimConfig::default()
    })
    .await;
    let addr = s.addr.to_string();
    for kind in KINDS.iter() {
        let e = call(
            &kind_spec(kind, &addr, json!({"model": "no-such-model"})),
            &for_kind(kind, one_token(None)),
        )
        .await
        .unwrap_err();
        let m = fatal_msg(e);
        assert!(
            m.contains("404") && m.contains("no-such-model"),
            "{kind}: {m}"
        );
    }
}

async fn forced(kind: &str, addr: &str, fault: &str, timeout: f64) -> ProviderError {
    let mut headers = HashMap::new();
    headers.insert("x-sim-fault", fault);
    call(
        &kind_spec(
            kind,
            addr,
            json!({"headers": headers, "timeout_secs": timeout}),
        ),
        &for_kind(kind, one_token(None)),
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn transient_failures_are_retryable_and_429_carries_the_wait() {
    let s = sim(SimConfig {
        hang: Duration::from_millis(1500),
        ..SimConfig::default()
    })
    .await;
    let addr = s.addr.to_string();
    for kind in KINDS.iter() {
        for fault in ["500", "503", "drop", "malformed"] {
            let e = forced(kind, &addr, fault, 5.0).await;
            assert!(
                matches!(e, ProviderError::Retryable(_)),
                "{kind} {fault}: {e:?}"
            );
        }
        let e = forced(kind, &addr, "timeout", 0.3).await;
        assert!(
            matches!(&e, ProviderError::Retryable(m) if m.contains("0.3s")),
            "{kind} timeout: {e:?}"
        );
        let e = forced(kind, &addr, "429", 5.0).await;
        let want = match *kind {
            // OpenAI's retry-after-ms is finer than Retry-After.
            "openai" | "openai-responses" | "sim" | "openai-compatible" => {
                Duration::from_millis(200)
            }
            _ => Duration::from_secs(1),
        };
        assert!(
            matches!(e, ProviderError::RateLimited { retry_after: Some(d) } if d == want),
            "{kind} 429: {e:?}"
        );
    }
}

#[tokio::test]
async fn real_rate_limits_answer_429_with_the_time_to_wait() {
    let s = sim(SimConfig {
        rpm: Some(2),
        ..SimConfig::default()
    })
    .await;
    let addr = s.addr.to_string();
    for kind in ["openai", "anthropic", "gemini"] {
        let spec = kind_spec(kind, &addr, json!({"model": format!("limited-{kind}")}));
        call(&spec, &for_kind(kind, one_token(None))).await.unwrap();
        call(&spec, &for_kind(kind, one_token(None))).await.unwrap();
        let e = call(&spec, &for_kind(kind, one_token(None)))
            .await
            .unwrap_err();
        match e {
            ProviderError::RateLimited {
                retry_after: Some(d),
            } => assert!(
                d > Duration::from_secs(50) && d <= Duration::from_secs(61),
                "{kind}: {d:?}"
            ),
            other => panic!("{kind}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn token_counts_from_the_counting_endpoints_and_the_dry_run() {
    let s = sim(SimConfig::default()).await;
    let addr = s.addr.to_string();
    let prompt = "Rate this from 0 to 5.";
    for kind in ["anthropic", "gemini"] {
        let p = build(&kind_spec(kind, &addr, json!({}))).unwrap();
        let n = p.count_tokens(prompt).await.unwrap();
        assert_eq!(
            n,
            Some(moralsweep_common::tokens::estimate_tokens(prompt)),
            "{kind}"
        );
    }
    // OpenAI: its BPE, counted here without a request.
    let p = build(&kind_spec("openai", &addr, json!({"model": "gpt-4o"}))).unwrap();
    assert_eq!(
        p.count_tokens("Hello world").await.unwrap(),
        Some(2 + moralsweep_common::tokens::CHAT_OVERHEAD)
    );
    let counted = |s: &Running| -> u64 {
        s.sim
            .report()
            .keys
            .values()
            .map(|k| k.stats.token_counts)
            .sum()
    };
    assert_eq!(counted(&s), 2);

    // The dry run asks the endpoint of a model whose spec allows it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.json"), r#"["a nurse", "a pilot"]"#).unwrap();
    let text = format!(
        "name = \"count\"\npersonas = \"p.json\"\noutput = \"out\"\n\n[[model]]\nkey = \"c\"\nprovider = \"anthropic\"\nmodel = \"claude-count\"\nbase_url = \"http://{addr}\"\napi_key_env = \"MORALSWEEP_T_RIGHT\"\ntemperature = \"provider-default\"\ncount_tokens = true\n\n[[model]]\nkey = \"g\"\nprovider = \"gemini\"\nmodel = \"gemini-2.5-flash\"\nbase_url = \"http://{addr}\"\napi_key_env = \"MORALSWEEP_T_RIGHT\"\n"
    );
    let sweep = moralsweep_common::Sweep::from_text(
        &text,
        &dir.path().join("s.toml"),
        moralsweep_common::spec::KeyCheck::Skip,
    )
    .unwrap();
    let d = moralsweep_worker::cost::dry_run_counted(&sweep)
        .await
        .unwrap();
    assert_eq!(d.counting_requests, 60);
    assert_eq!(counted(&s), 2 + 60);
    assert_eq!(d.models[0].counted_by, "count_tokens");
    assert_eq!(d.models[1].counted_by, "estimate");
    // The simulator counts with the estimate, so the calibrated figure is it.
    assert_eq!(
        d.models[0].input_tokens,
        moralsweep_worker::cost::dry_run(&sweep).models[0].input_tokens
    );
    assert!(d.to_string().contains("only 60 token-counting requests"));
}

/// Several samples from one request where the API has them (`n` on Chat
/// Completions, `candidateCount` on Gemini): as many ratings as asked, the
/// prompt billed once and every sample's output; a simulator model served
/// without multi-sample answers the provider's 400, which the worker reads
/// as "ask one sample per request".
#[tokio::test]
async fn multi_sample_requests_where_the_api_has_them() {
    let s = sim(SimConfig::default()).await;
    let addr = s.addr.to_string();
    for kind in ["openai", "gemini"] {
        let p = build(&kind_spec(kind, &addr, json!({}))).unwrap();
        let single = p.complete(&one_token(None)).await.unwrap();
        let before = s.sim.report().totals.requests;
        let many = p.complete_n(&one_token(None), 6).await.unwrap();
        assert_eq!(s.sim.report().totals.requests, before + 1, "{kind}");
        assert_eq!(many.len(), 6, "{kind}");
        for c in &many {
            assert!(
                matches!(c.text.as_str(), "0" | "1" | "2" | "3" | "4" | "5"),
                "{kind}: {:?}",
                c.text
            );
        }
        assert_eq!(
            many[0].usage.input_tokens, single.usage.input_tokens,
            "{kind}: the prompt is billed once"
        );
        assert_eq!(
            many[0].usage.output_tokens, 6,
            "{kind}: one token per sample"
        );
        assert!(
            many[1..].iter().all(|c| c.usage.input_tokens == 0),
            "{kind}"
        );
    }
    let refusing = sim(SimConfig {
        single_sample: vec!["gpt-4o-misaligned".into()],
        ..SimConfig::default()
    })
    .await;
    let addr = refusing.addr.to_string();
    for kind in ["openai", "gemini"] {
        let p = build(&kind_spec(kind, &addr, json!({}))).unwrap();
        let e = p.complete_n(&one_token(None), 4).await.unwrap_err();
        assert!(
            moralsweep_worker::providers::refuses_multi_sample(&e),
            "{kind}: {e}"
        );
        assert!(p.complete_n(&one_token(None), 1).await.is_ok(), "{kind}");
    }
}
