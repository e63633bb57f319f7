//! The worker's batch clients against the simulator's batch APIs: a list of
//! rating requests (the interactive adapters' bodies, `n` included) goes
//! out as one batch, is polled to its end and comes back per custom id:
//! deal mode deals each recorded answer of a cell exactly once through a
//! batch, for OpenAI (files + batches), Anthropic (Message Batches) and
//! Gemini (batch mode). Errored, expired and cancelled requests come back
//! classified; a stored [`Submitted`] record is enough to collect the
//! results later without submitting again; requests the API cannot serve
//! are refused before anything is sent.

use std::collections::HashMap;
use std::time::Duration;

use moralsweep_common::prompt::persona_prompt;
use moralsweep_common::{ModelSpec, ITEMS};
use moralsweep_simulator::{spawn, BatchSettings, ReplayMode, Running, SimConfig};
use moralsweep_testsupport::replay::ReplayDir;
use moralsweep_worker::providers::batch::{self, BatchItem, ItemResult, Submitted};
use moralsweep_worker::providers::{CompletionRequest, ProviderError};
use serde_json::{json, Value};

const KEY: &str = "sk-batch-test-51c2";
/// One cell (persona 1, item 4) with ten recorded ratings.
const RATINGS: [u8; 10] = [0, 1, 1, 2, 2, 2, 3, 4, 5, 5];
const EVERY: Duration = Duration::from_millis(5);

fn replay_dir() -> ReplayDir {
    ReplayDir::new().cell("m", &RATINGS)
}

async fn sim(dir: &ReplayDir, batch: BatchSettings, mode: ReplayMode) -> Running {
    spawn(
        SimConfig {
            replay: Some(dir.path().to_path_buf()),
            personas: Some(dir.personas()),
            replay_mode: mode,
            seed: 5,
            api_key: Some(KEY.into()),
            batch,
            ..SimConfig::default()
        },
        "127.0.0.1:0",
    )
    .await
    .unwrap()
}

fn spec(provider: &str, s: &Running, fields: Value) -> ModelSpec {
    std::env::set_var("MORALSWEEP_BATCH_T_KEY", KEY);
    let base = match provider {
        "openai" | "sim" => format!("http://{}/v1", s.addr),
        _ => format!("http://{}", s.addr),
    };
    let mut v = json!({"key": "k1", "provider": provider, "model": "m", "base_url": base,
                       "api_key_env": "MORALSWEEP_BATCH_T_KEY", "timeout_secs": 30.0});
    for (k, x) in fields.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn item(id: &str, seed: u64, n: u32, temperature: Option<f64>, top: Option<u32>) -> BatchItem {
    BatchItem {
        custom_id: id.into(),
        req: CompletionRequest {
            prompt: persona_prompt("a pilot", &ITEMS[3]),
            max_tokens: 1,
            temperature,
            seed: Some(seed),
            top_logprobs: top,
        },
        n,
    }
}

/// Four one-sample items and one of six: the cell's ten recorded answers.
fn ten_samples(temperature: Option<f64>, top: Option<u32>) -> Vec<BatchItem> {
    let mut items: Vec<BatchItem> = (0..4)
        .map(|i| {
            item(
                &format!("slot-{i}"),
                (i + 1) * 1_000_000,
                1,
                temperature,
                top,
            )
        })
        .collect();
    items.push(item("slot-six", 90_000_000, 6, temperature, top));
    items
}

fn ratings(results: &HashMap<String, ItemResult>) -> Vec<u8> {
    let mut out: Vec<u8> = results
        .values()
        .flat_map(|r| match r {
            ItemResult::Answered(samples) => samples.clone(),
            other => panic!("{other:?}"),
        })
        .map(|c| c.text.parse().unwrap())
        .collect();
    out.sort();
    out
}

fn stats(s: &Running) -> Value {
    serde_json::to_value(s.sim.report()).unwrap()
}

#[tokio::test]
async fn openai_batches_deal_each_recorded_answer_once_with_n_and_logprobs() {
    let dir = replay_dir();
    let s = sim(&dir, BatchSettings::default(), ReplayMode::Deal).await;
    let client = batch::build(&spec("openai", &s, json!({}))).unwrap();
    let items = ten_samples(Some(0.1), Some(5));
    let (record, results) = batch::run_to_end(client.as_ref(), &items, EVERY)
        .await
        .unwrap();
    assert_eq!(record.api, "openai");
    assert!(
        record.id.starts_with("batch_") && record.input_file_id.is_some(),
        "{record:?}"
    );
    assert_eq!(results.len(), 5);
    assert_eq!(ratings(&results), RATINGS);
    let ItemResult::Answered(six) = &results["slot-six"] else {
        panic!()
    };
    assert_eq!(six.len(), 6);
    assert!(six[0].usage.input_tokens > 0 && six[0].usage.output_tokens == 6);
    assert!(six[1..].iter().all(|c| c.usage.input_tokens == 0));
    assert_eq!(six[0].top_logprobs.as_ref().unwrap().len(), 5);
    let st = stats(&s);
    assert_eq!(st["batches"]["apis"]["openai"]["created"], 1);
    assert_eq!(st["keys"]["m"]["batch_lines"], 5);
    assert_eq!(st["keys"]["m"]["requests"], 0);
}

#[tokio::test]
async fn a_stored_record_collects_the_results_without_submitting_again() {
    let dir = replay_dir();
    let s = sim(
        &dir,
        BatchSettings {
            delay: Duration::from_millis(300),
            ..BatchSettings::default()
        },
        ReplayMode::Deal,
    )
    .await;
    let spec = spec("sim", &s, json!({}));
    let items = ten_samples(Some(0.1), None);
    let record = {
        let first = batch::build(&spec).unwrap();
        first.submit("test-batch", &items).await.unwrap()
    };
    // The record as a store would keep it, read back by a new client.
    let stored = serde_json::to_string(&record).unwrap();
    let record: Submitted = serde_json::from_str(&stored).unwrap();
    let second = batch::build(&spec).unwrap();
    while !second.poll(&record).await.unwrap().ended {
        tokio::time::sleep(EVERY).await;
    }
    let results = second.results(&record, &items).await.unwrap();
    assert_eq!(ratings(&results), RATINGS);
    let st = stats(&s);
    assert_eq!(st["batches"]["created"], 1);
    assert_eq!(st["batches"]["resubmitted"], 0);
}

#[tokio::test]
async fn errored_expired_and_cancelled_requests_come_back_classified() {
    let dir = replay_dir();
    let s = sim(
        &dir,
        BatchSettings {
            errored: 0.3,
            expired: 0.2,
            ..BatchSettings::default()
        },
        ReplayMode::Sample,
    )
    .await;
    let items: Vec<BatchItem> = (0..100)
        .map(|i| item(&format!("p{i}"), i * 7_000_001, 1, Some(0.1), None))
        .collect();
    for provider in ["openai", "anthropic", "gemini"] {
        let fields = if provider == "anthropic" {
            json!({"temperature": "provider-default"})
        } else {
            json!({})
        };
        let items: Vec<BatchItem> = if provider == "anthropic" {
            items
                .iter()
                .map(|i| BatchItem {
                    req: CompletionRequest {
                        temperature: None,
                        ..i.req.clone()
                    },
                    ..i.clone()
                })
                .collect()
        } else {
            items.clone()
        };
        let client = batch::build(&spec(provider, &s, fields)).unwrap();
        let (_, results) = batch::run_to_end(client.as_ref(), &items, EVERY)
            .await
            .unwrap();
        assert_eq!(results.len(), 100, "{provider}");
        let (mut ok, mut failed, mut expired) = (0, 0, 0);
        for r in results.values() {
            match r {
                ItemResult::Answered(_) => ok += 1,
                ItemResult::Failed(ProviderError::Retryable(m)) => {
                    assert!(m.contains("500"), "{provider}: {m}");
                    failed += 1
                }
                ItemResult::Expired => expired += 1,
                other => panic!("{provider}: {other:?}"),
            }
        }
        assert!(
            ok > 20 && failed > 10 && expired > 5,
            "{provider}: {ok} {failed} {expired}"
        );
    }

    // Cancelled before anything ran: every request comes back cancelled.
    let slow = sim(
        &dir,
        BatchSettings {
            delay: Duration::from_secs(3600),
            ..BatchSettings::default()
        },
        ReplayMode::Sample,
    )
    .await;
    for provider in ["openai", "anthropic", "gemini"] {
        let mut items = ten_samples(Some(0.1), None);
        if provider == "anthropic" {
            items.truncate(4);
            for i in &mut items {
                i.req.temperature = None;
            }
        }
        let client = batch::build(&spec(provider, &slow, json!({}))).unwrap();
        let record = client.submit("test-batch", &items).await.unwrap();
        let p = client.poll(&record).await.unwrap();
        assert!(!p.ended, "{provider}: {p:?}");
        let now = chrono::Utc::now().timestamp();
        let window = p.expires_at.unwrap() - now;
        assert!(
            (23 * 3600..=48 * 3600).contains(&window),
            "{provider}: {p:?}"
        );
        client.cancel(&record).await.unwrap();
        while !client.poll(&record).await.unwrap().ended {
            tokio::time::sleep(EVERY).await;
        }
        let results = client.results(&record, &items).await.unwrap();
        assert!(
            results.values().all(|r| matches!(r, ItemResult::Canceled)),
            "{provider}: {results:?}"
        );
    }
    assert_eq!(stats(&slow)["batches"]["created"], 3);
}

#[tokio::test]
async fn anthropic_and_gemini_batches_answer_the_adapters_bodies() {
    let dir = replay_dir();
    let s = sim(&dir, BatchSettings::default(), ReplayMode::Deal).await;
    // Gemini: the six samples come from one candidateCount request.
    let gemini = batch::build(&spec("gemini", &s, json!({}))).unwrap();
    let (record, results) =
        batch::run_to_end(gemini.as_ref(), &ten_samples(Some(0.1), None), EVERY)
            .await
            .unwrap();
    assert!(record.id.starts_with("batches/"), "{record:?}");
    assert_eq!(ratings(&results), RATINGS);

    let s = sim(&dir, BatchSettings::default(), ReplayMode::Deal).await;
    let anthropic = batch::build(&spec(
        "anthropic",
        &s,
        json!({"temperature": "provider-default"}),
    ))
    .unwrap();
    let items: Vec<BatchItem> = (0..10)
        .map(|i| item(&format!("a-{i}"), i, 1, None, None))
        .collect();
    let (record, results) = batch::run_to_end(anthropic.as_ref(), &items, EVERY)
        .await
        .unwrap();
    assert!(record.id.starts_with("msgbatch_"), "{record:?}");
    assert_eq!(ratings(&results), RATINGS);
    // Refused before sending: a temperature, several samples, a bad custom id.
    for bad in [
        item("t", 1, 1, Some(0.1), None),
        item("n", 1, 3, None, None),
        item("not ok", 1, 1, None, None),
    ] {
        let e = anthropic
            .submit("test-batch", std::slice::from_ref(&bad))
            .await
            .unwrap_err();
        assert!(matches!(e, ProviderError::Fatal(_)), "{e}");
    }
    assert_eq!(stats(&s)["batches"]["apis"]["anthropic"]["created"], 1);
    // Repeated custom ids are refused by every client.
    let twice = [item("x", 1, 1, None, None), item("x", 2, 1, None, None)];
    let e = anthropic.submit("test-batch", &twice).await.unwrap_err();
    assert!(e.to_string().contains("appears twice"), "{e}");
}

#[tokio::test]
async fn a_batch_the_provider_fails_names_its_lines() {
    let dir = replay_dir();
    let s = sim(&dir, BatchSettings::default(), ReplayMode::Sample).await;
    // A field the API does not define, added by the spec's `extra`.
    let client = batch::build(&spec("openai", &s, json!({"extra": {"bogus_field": 1}}))).unwrap();
    let e = batch::run_to_end(client.as_ref(), &ten_samples(Some(0.1), None), EVERY)
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ProviderError::Fatal(_)), "{msg}");
    assert!(
        msg.contains("line 1") && msg.contains("bogus_field"),
        "{msg}"
    );
    let unknown = batch::build(&spec("openai-compatible", &s, json!({})))
        .err()
        .unwrap();
    assert!(unknown.to_string().contains("no batch API"), "{unknown}");
}

/// A batch the provider accepted before its submitter could store the
/// answer (it died in between) is found again by its tag, for each API,
/// instead of being submitted twice; a tag never submitted is absent.
/// Anthropic names no batch, so there a running candidate with as many
/// requests cannot be told apart until it ends ("not yet").
#[tokio::test]
async fn a_submitted_batch_is_found_again_by_its_tag() {
    use batch::Found;
    let dir = replay_dir();
    for provider in ["sim", "gemini", "anthropic"] {
        let s = sim(
            &dir,
            BatchSettings {
                delay: Duration::from_millis(600),
                ..BatchSettings::default()
            },
            ReplayMode::Sample,
        )
        .await;
        let client = batch::build(&spec(provider, &s, json!({}))).unwrap();
        // Anthropic's current models take no temperature.
        let t = (provider != "anthropic").then_some(0.1);
        let items: Vec<BatchItem> = (0..3)
            .map(|i| item(&format!("5f3a9c01-s{i}-m1-a0"), i, 1, t, None))
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let sent = client.submit("msb-test-g0", &items).await.unwrap();
        let found = client.find("msb-test-g0", &items, now).await.unwrap();
        if provider == "anthropic" {
            assert_eq!(found, Found::NotYet, "{provider}: still running");
            while !client.poll(&sent).await.unwrap().ended {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let found = client.find("msb-test-g0", &items, now).await.unwrap();
            assert_eq!(found, Found::Batch(sent.clone()), "{provider}");
        } else {
            assert_eq!(found, Found::Batch(sent.clone()), "{provider}");
        }
        // Another generation's tag and custom ids: nothing to find (once
        // the candidate has ended, for Anthropic).
        while !client.poll(&sent).await.unwrap().ended {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let others: Vec<BatchItem> = (0..3)
            .map(|i| item(&format!("77e0b2d4-s{i}-m1-a1"), i, 1, t, None))
            .collect();
        assert_eq!(
            client.find("msb-test-g1", &others, now).await.unwrap(),
            Found::Absent,
            "{provider}"
        );
        assert_eq!(stats(&s)["batches"]["created"], 1, "{provider}");
    }
}
