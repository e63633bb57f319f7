//! The simulator over real HTTP: Anthropic and Gemini shapes with their
//! rate-limit signals, deal mode's exact return of recorded ratings, seeded
//! determinism across restarts, and the stats endpoint's windows.

use std::time::Duration;

use moralsweep_common::prompt::persona_prompt;
use moralsweep_common::ITEMS;
use moralsweep_simulator::{spawn, ReplayMode, SimConfig};
use moralsweep_testsupport::replay::ReplayDir;
use serde_json::{json, Value};

async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut r = reqwest::Client::new().post(url).json(&body);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let v = resp.json().await.unwrap_or(Value::Null);
    (status, headers, v)
}

fn replay_dir() -> ReplayDir {
    ReplayDir::new().cell("m", &[0, 2, 2, 5])
}

fn config(dir: &ReplayDir, mode: ReplayMode) -> SimConfig {
    SimConfig {
        replay: Some(dir.path().to_path_buf()),
        personas: Some(dir.personas()),
        replay_mode: mode,
        seed: 9,
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn deal_mode_returns_the_recorded_ratings_through_every_api() {
    let dir = replay_dir();
    let s = spawn(config(&dir, ReplayMode::Deal), "127.0.0.1:0")
        .await
        .unwrap();
    let prompt = persona_prompt("a pilot", &ITEMS[3]);
    let base = format!("http://{}", s.addr);
    let mut got = Vec::new();
    // Anthropic twice, Gemini twice: one full deck of four.
    for _ in 0..2 {
        let (st, h, v) = post(
            &format!("{base}/v1/messages"),
            &[("anthropic-version", "2023-06-01"), ("x-api-key", "k")],
            json!({"model": "m", "max_tokens": 1,
                   "messages": [{"role": "user", "content": prompt}]}),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        assert!(h.contains_key("request-id") || h.contains_key("x-request-id"));
        assert_eq!(v["type"], "message");
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["content"][0]["type"], "text");
        got.push(v["content"][0]["text"].as_str().unwrap().to_string());
        let (st, _, v) = post(
            &format!("{base}/v1beta/models/m:generateContent"),
            &[("x-goog-api-key", "k")],
            json!({"contents": [{"role": "user", "parts": [{"text": prompt}]}],
                   "generationConfig": {"temperature": 0.1, "maxOutputTokens": 1,
                                        "responseLogprobs": true, "logprobs": 5}}),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let c = &v["candidates"][0];
        assert_eq!(c["content"]["role"], "model");
        assert_eq!(c["finishReason"], "STOP");
        let top = c["logprobsResult"]["topCandidates"][0]["candidates"]
            .as_array()
            .unwrap();
        assert_eq!(top.len(), 5);
        // The recorded distribution: 0 once, 2 twice, 5 once in four.
        let lp = |t: &str| {
            top.iter().find(|x| x["token"] == t).unwrap()["logProbability"]
                .as_f64()
                .unwrap()
        };
        assert!((lp("2").exp() - 0.5).abs() < 1e-3);
        assert!((lp("0").exp() - 0.25).abs() < 1e-3);
        assert!(v["usageMetadata"]["promptTokenCount"].as_u64().unwrap() > 0);
        got.push(
            c["content"]["parts"][0]["text"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    got.sort();
    assert_eq!(got, vec!["0", "2", "2", "5"]);
    let r = s.sim.report();
    assert_eq!(r.keys["m"].stats.replayed, 4);
}

#[tokio::test]
async fn a_seed_gives_the_same_answers_after_a_restart() {
    let dir = replay_dir();
    let mut runs = Vec::new();
    for _ in 0..2 {
        let s = spawn(config(&dir, ReplayMode::Sample), "127.0.0.1:0")
            .await
            .unwrap();
        let mut answers = Vec::new();
        for seed in 0..12 {
            let (_, _, v) = post(
                &format!("http://{}/v1/chat/completions", s.addr),
                &[],
                json!({"model": "m", "max_tokens": 1, "seed": seed,
                       "messages": [{"role": "user", "content": persona_prompt("a pilot", &ITEMS[3])}]}),
            )
            .await;
            answers.push(
                v["choices"][0]["message"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        s.task.abort();
        runs.push(answers);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].iter().any(|a| a != &runs[0][0]), "{:?}", runs[0]);
}

#[tokio::test]
async fn limits_are_signalled_the_way_each_provider_does_and_counted() {
    let s = spawn(
        SimConfig {
            rpm: Some(3),
            ..SimConfig::default()
        },
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    let base = format!("http://{}", s.addr);
    let msg =
        json!({"model": "a", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]});
    let av = [("anthropic-version", "2023-06-01")];
    for i in 0..3 {
        let (st, h, _) = post(&format!("{base}/v1/messages"), &av, msg.clone()).await;
        assert_eq!(st, 200);
        assert_eq!(h["anthropic-ratelimit-requests-limit"], "3");
        assert_eq!(
            h["anthropic-ratelimit-requests-remaining"],
            (2 - i).to_string().as_str()
        );
        assert!(h["anthropic-ratelimit-requests-reset"]
            .to_str()
            .unwrap()
            .ends_with('Z'));
    }
    let (st, h, v) = post(&format!("{base}/v1/messages"), &av, msg.clone()).await;
    assert_eq!(st, 429);
    assert_eq!(v["error"]["type"], "rate_limit_error");
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((55..=60).contains(&wait), "{wait}");
    // Gemini says it in the body.
    let g = json!({"contents": [{"parts": [{"text": "x"}]}]});
    for _ in 0..3 {
        post(
            &format!("{base}/v1beta/models/b:generateContent"),
            &[],
            g.clone(),
        )
        .await;
    }
    let (st, _, v) = post(&format!("{base}/v1beta/models/b:generateContent"), &[], g).await;
    assert_eq!(st, 429);
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert!(v["error"]["details"][0]["retryDelay"]
        .as_str()
        .unwrap()
        .ends_with('s'));
    // Missing anthropic-version is a 400, as with the real API.
    let (st, _, v) = post(&format!("{base}/v1/messages"), &[], msg).await;
    assert_eq!(st, 400, "{v}");

    let stats: Value = reqwest::get(format!("{base}/_sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let a = &stats["keys"]["a"];
    assert_eq!(a["requests"], 4);
    assert_eq!(a["admitted"], 3);
    assert_eq!(a["rate_limited"], 1);
    assert_eq!(a["max_60s"], 4);
    assert_eq!(a["max_admitted_60s"], 3);
    assert_eq!(stats["totals"]["requests"], 8);
    reqwest::Client::new()
        .post(format!("{base}/_sim/reset"))
        .send()
        .await
        .unwrap();
    let stats: Value = reqwest::get(format!("{base}/_sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["totals"]["requests"], 0);
    tokio::time::sleep(Duration::from_millis(1)).await;
}
