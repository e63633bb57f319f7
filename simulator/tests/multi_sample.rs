//! Several samples from one request over real HTTP: OpenAI's `n` and
//! Gemini's `candidateCount` give distinct draws per choice (deal mode deals
//! n recorded answers from one request), usage bills the prompt once and the
//! output of every choice, the providers' caps are enforced, and a model
//! served without multi-sample answers the provider's 400 naming the
//! parameter.

use moralsweep_common::prompt::persona_prompt;
use moralsweep_common::ITEMS;
use moralsweep_simulator::{spawn, ReplayMode, SimConfig};
use moralsweep_testsupport::replay::ReplayDir;
use serde_json::{json, Value};

async fn post(url: &str, headers: &[(&str, &str)], body: Value) -> (u16, Value) {
    let mut r = reqwest::Client::new().post(url).json(&body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// One cell (persona 1, item 4) with ten recorded ratings.
const RATINGS: [u8; 10] = [0, 1, 1, 2, 2, 2, 3, 4, 5, 5];

/// `m` with the ten ratings, `single` (served without multi-sample) with one.
fn replay_dir() -> ReplayDir {
    ReplayDir::new().cell("m", &RATINGS).cell("single", &[3])
}

fn config(dir: &ReplayDir) -> SimConfig {
    SimConfig {
        replay: Some(dir.path().to_path_buf()),
        personas: Some(dir.personas()),
        replay_mode: ReplayMode::Deal,
        seed: 3,
        single_sample: vec!["single".into()],
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn openai_n_deals_every_recorded_answer_of_a_cell_from_one_request() {
    let dir = replay_dir();
    let s = spawn(config(&dir), "127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/chat/completions", s.addr);
    let prompt = persona_prompt("a pilot", &ITEMS[3]);
    let body = |n: u64, seed: u64| {
        json!({"model": "m", "messages": [{"role": "user", "content": prompt}],
               "max_tokens": 1, "temperature": 0.1, "seed": seed, "n": n})
    };
    let (st, one) = post(&url, &[], body(1, 1_000)).await;
    assert_eq!(st, 200, "{one}");
    let prompt_tokens = one["usage"]["prompt_tokens"].as_u64().unwrap();
    let (st, v) = post(&url, &[], body(9, 9_000_000)).await;
    assert_eq!(st, 200, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 9);
    let mut got: Vec<u8> = std::iter::once(&one["choices"][0])
        .chain(choices)
        .map(|c| c["message"]["content"].as_str().unwrap().parse().unwrap())
        .collect();
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["finish_reason"], "stop");
    }
    // The prompt once, one output token per choice.
    assert_eq!(v["usage"]["prompt_tokens"], prompt_tokens);
    assert_eq!(v["usage"]["completion_tokens"], 9);
    assert_eq!(v["usage"]["total_tokens"], prompt_tokens + 9);
    // Ten draws without replacement: exactly the recorded ratings.
    got.sort();
    assert_eq!(got, RATINGS.to_vec());
    // The same request again (a retry) is dealt the same cards.
    let (_, again) = post(&url, &[], body(9, 9_000_000)).await;
    assert_eq!(again["choices"], v["choices"]);
    // Its next attempt (seed + 1) is the first slot asking again: only
    // choice 0 repeats, the others are new draws from a reshuffled deck.
    let (_, next) = post(&url, &[], body(2, 9_000_001)).await;
    assert_eq!(next["choices"][0], v["choices"][0]);
    let stats: Value = reqwest::get(format!("http://{}/_sim/stats", s.addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m = &stats["keys"]["m"];
    assert_eq!(m["requests"], 4, "{stats}");
    assert_eq!(m["replayed"], 21, "{stats}");
    assert_eq!(m["repeated"], 10, "{stats}");
}

#[tokio::test]
async fn caps_and_single_sample_models_answer_the_providers_400() {
    let dir = replay_dir();
    let s = spawn(config(&dir), "127.0.0.1:0").await.unwrap();
    let prompt = persona_prompt("a pilot", &ITEMS[3]);
    let chat = format!("http://{}/v1/chat/completions", s.addr);
    let body = |model: &str, n: u64| {
        json!({"model": model, "messages": [{"role": "user", "content": prompt}],
               "max_tokens": 1, "n": n})
    };
    for (model, n, says) in [
        ("m", 129, "Expected a value <= 128"),
        ("m", 0, "Expected a value >= 1"),
        ("single", 2, "Unsupported parameter: 'n'"),
    ] {
        let (st, v) = post(&chat, &[], body(model, n)).await;
        assert_eq!(st, 400, "{v}");
        assert_eq!(v["error"]["param"], "n", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(says),
            "{v}"
        );
    }
    // n = 1 is fine for a single-sample model.
    let (st, v) = post(&chat, &[], body("single", 1)).await;
    assert_eq!(st, 200, "{v}");

    let gemini = |model: &str| format!("http://{}/v1beta/models/{model}:generateContent", s.addr);
    let gbody = |k: u64| {
        json!({"contents": [{"role": "user", "parts": [{"text": prompt}]}],
               "generationConfig": {"temperature": 0.1, "maxOutputTokens": 1, "candidateCount": k}})
    };
    let (st, v) = post(&gemini("m"), &[("x-goog-api-key", "k")], gbody(4)).await;
    assert_eq!(st, 200, "{v}");
    let c = v["candidates"].as_array().unwrap();
    assert_eq!(c.len(), 4);
    for (i, x) in c.iter().enumerate() {
        assert_eq!(x["index"], i);
        let t: u8 = x["content"]["parts"][0]["text"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(RATINGS.contains(&t));
    }
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 4);
    let (st, v) = post(&gemini("m"), &[("x-goog-api-key", "k")], gbody(9)).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("candidate_count"),
        "{v}"
    );
    let (st, v) = post(&gemini("single"), &[("x-goog-api-key", "k")], gbody(2)).await;
    assert_eq!(st, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("candidateCount must be 1"),
        "{v}"
    );
}
