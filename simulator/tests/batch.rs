//! The three providers' batch APIs over real HTTP: OpenAI (files, batches,
//! output and error files), Anthropic Message Batches (results as JSONL)
//! and Gemini batch mode (inline requests, a long-running operation). Each
//! line is answered by the engine that answers interactive calls, so deal
//! mode deals every recorded answer of a cell exactly once through batches,
//! `n` and `candidateCount` work inside lines, and the stats count every
//! batch created. Validation failures, the size limits, partial failure
//! and cancelling are checked too.

use std::time::Duration;

use moralsweep_common::prompt::persona_prompt;
use moralsweep_common::ITEMS;
use moralsweep_simulator::{spawn, BatchSettings, ReplayMode, Running, SimConfig};
use moralsweep_testsupport::replay::ReplayDir;
use serde_json::{json, Value};

/// One cell (persona 1, item 4) with ten recorded ratings.
const RATINGS: [u8; 10] = [0, 1, 1, 2, 2, 2, 3, 4, 5, 5];

/// `m`, `claude-m` and `gemini-m` with the ten ratings, `single` (served
/// without multi-sample) with one.
fn replay_dir() -> ReplayDir {
    ReplayDir::new()
        .cell("m", &RATINGS)
        .cell("claude-m", &RATINGS)
        .cell("gemini-m", &RATINGS)
        .cell("single", &[3])
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

fn prompt() -> String {
    persona_prompt("a pilot", &ITEMS[3])
}

struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    fn new(s: &Running) -> Client {
        Client {
            base: format!("http://{}", s.addr),
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, r: reqwest::RequestBuilder) -> (u16, String) {
        let resp = r
            .header("anthropic-version", "2023-06-01")
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (s, t) = self
            .send(self.http.get(format!("{}{path}", self.base)))
            .await;
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    async fn text(&self, path: &str) -> (u16, String) {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let (s, t) = self
            .send(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await;
        (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
    }

    /// `POST /v1/files` with a hand-made multipart form.
    async fn upload(&self, name: &str, purpose: &str, content: &[u8]) -> (u16, Value) {
        let boundary = "sim-test-boundary-7f3a";
        let mut body = Vec::new();
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n").as_bytes());
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        body.extend_from_slice(content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let (s, t) = self
            .send(
                self.http
                    .post(format!("{}/v1/files", self.base))
                    .header(
                        "content-type",
                        format!("multipart/form-data; boundary={boundary}"),
                    )
                    .body(body),
            )
            .await;
        (s, serde_json::from_str(&t).unwrap())
    }

    /// Uploads `lines` and creates a chat batch of them.
    async fn openai_batch(&self, lines: &[Value]) -> Value {
        let jsonl: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let (s, f) = self.upload("in.jsonl", "batch", jsonl.as_bytes()).await;
        assert_eq!(s, 200, "{f}");
        let (s, b) = self
            .post(
                "/v1/batches",
                json!({"input_file_id": f["id"], "endpoint": "/v1/chat/completions",
                       "completion_window": "24h", "metadata": {"sweep": "t"}}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["status"], "validating");
        b
    }

    /// Polls an OpenAI batch until it has ended; the statuses seen.
    async fn openai_wait(&self, id: &str) -> (Value, Vec<String>) {
        let mut seen = Vec::new();
        loop {
            let (s, b) = self.get(&format!("/v1/batches/{id}")).await;
            assert_eq!(s, 200, "{b}");
            let status = b["status"].as_str().unwrap().to_string();
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            if ["completed", "failed", "expired", "cancelled"].contains(&status.as_str()) {
                return (b, seen);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn lines_of(&self, file_id: &Value) -> Vec<Value> {
        let Some(id) = file_id.as_str() else {
            return vec![];
        };
        let (s, t) = self.text(&format!("/v1/files/{id}/content")).await;
        assert_eq!(s, 200, "{t}");
        t.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn chat_line(id: &str, seed: u64, n: u64) -> Value {
    json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions",
           "body": {"model": "m", "messages": [{"role": "user", "content": prompt()}],
                    "max_tokens": 1, "temperature": 0.1, "seed": seed, "n": n,
                    "logprobs": true, "top_logprobs": 5}})
}

fn digit(text: &Value) -> u8 {
    text.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn openai_batches_deal_every_recorded_answer_once_with_n_and_logprobs() {
    let dir = replay_dir();
    let s = spawn(config(&dir), "127.0.0.1:0").await.unwrap();
    let c = Client::new(&s);
    // 4 lines of one sample and one of six: the cell's ten recorded answers.
    let mut lines: Vec<Value> = (0..4)
        .map(|i| chat_line(&format!("r{i}"), (i + 1) * 1_000_000, 1))
        .collect();
    lines.push(chat_line("r-six", 90_000_000, 6));
    let b = c.openai_batch(&lines).await;
    assert_eq!(b["endpoint"], "/v1/chat/completions");
    assert_eq!(b["metadata"]["sweep"], "t");
    let (done, seen) = c.openai_wait(b["id"].as_str().unwrap()).await;
    // Without a delay the first look answers every line (finalizing), the
    // next ends the batch.
    assert_eq!(seen, ["finalizing", "completed"]);
    assert_eq!(done["status"], "completed");
    assert_eq!(
        done["request_counts"],
        json!({"total": 5, "completed": 5, "failed": 0})
    );
    assert!(done["error_file_id"].is_null(), "{done}");
    for k in ["in_progress_at", "finalizing_at", "completed_at"] {
        assert!(
            done[k].as_i64().unwrap() >= done["created_at"].as_i64().unwrap(),
            "{k}"
        );
    }
    let out = c.lines_of(&done["output_file_id"]).await;
    assert_eq!(out.len(), 5);
    let mut ratings = Vec::new();
    let mut output_tokens = 0;
    for l in &out {
        assert_eq!(l["response"]["status_code"], 200, "{l}");
        assert!(l["error"].is_null());
        assert!(l["id"].as_str().unwrap().starts_with("batch_req_"));
        let body = &l["response"]["body"];
        let choices = body["choices"].as_array().unwrap();
        let want = if l["custom_id"] == "r-six" { 6 } else { 1 };
        assert_eq!(choices.len(), want, "{l}");
        for ch in choices {
            ratings.push(digit(&ch["message"]["content"]));
            let top = ch["logprobs"]["content"][0]["top_logprobs"]
                .as_array()
                .unwrap();
            assert_eq!(top.len(), 5, "{ch}");
        }
        output_tokens += body["usage"]["completion_tokens"].as_u64().unwrap();
    }
    ratings.sort();
    assert_eq!(
        ratings, RATINGS,
        "deal mode through a batch deals each recorded answer once"
    );
    assert_eq!(done["usage"]["output_tokens"], output_tokens);
    let (_, stats) = c.get("/_sim/stats").await;
    assert_eq!(stats["batches"]["apis"]["openai"]["created"], 1);
    assert_eq!(stats["batches"]["apis"]["openai"]["lines"], 5);
    assert_eq!(stats["keys"]["m"]["batch_lines"], 5);
    assert_eq!(
        stats["keys"]["m"]["requests"], 0,
        "batch lines are not interactive requests"
    );
    assert_eq!(stats["keys"]["m"]["replayed"], 10);
    assert_eq!(stats["keys"]["m"]["batch_output_tokens"], output_tokens);
    // The same work submitted again is counted as a resubmission.
    assert_eq!(stats["batches"]["resubmitted"], 0);
    c.openai_batch(&lines).await;
    let (_, stats) = c.get("/_sim/stats").await;
    assert_eq!(stats["batches"]["created"], 2);
    assert_eq!(stats["batches"]["resubmitted"], 1);
}

#[tokio::test]
async fn openai_input_problems_fail_the_batch_naming_each_line() {
    let dir = replay_dir();
    let s = spawn(config(&dir), "127.0.0.1:0").await.unwrap();
    let c = Client::new(&s);
    let good = chat_line("a", 1, 1).to_string();
    let mut unknown_field = chat_line("b", 2, 1);
    unknown_field["body"]["bogus"] = json!(1);
    let mut wrong_url = chat_line("c", 3, 1);
    wrong_url["url"] = json!("/v1/completions");
    let mut other_model = chat_line("e", 5, 1);
    other_model["body"]["model"] = json!("claude-m");
    let text = [
        good.clone(),
        "{not json".into(),
        unknown_field.to_string(),
        wrong_url.to_string(),
        good.clone(),
        other_model.to_string(),
    ]
    .join("\n");
    let (st, f) = c.upload("bad.jsonl", "batch", text.as_bytes()).await;
    assert_eq!(st, 200, "{f}");
    let (_, b) = c
        .post("/v1/batches", json!({"input_file_id": f["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
        .await;
    let (done, _) = c.openai_wait(b["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed");
    assert!(done["failed_at"].is_i64());
    assert!(done["output_file_id"].is_null());
    let errors: Vec<(String, i64)> = done["errors"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["code"].as_str().unwrap().to_string(),
                e["line"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            ("invalid_json_line", 2),
            ("invalid_request", 3),
            ("invalid_url", 4),
            ("duplicate_custom_id", 5),
            ("mismatched_model", 6)
        ]
        .map(|(c, l)| (c.to_string(), l))
        .to_vec()
    );
    assert!(done["errors"]["data"][1]["message"]
        .as_str()
        .unwrap()
        .contains("bogus"));
    let (_, stats) = c.get("/_sim/stats").await;
    assert_eq!(
        stats["keys"]["m"]["replayed"],
        Value::Null,
        "a failed batch answers nothing"
    );

    // The limits: 50,001 requests fail validation; a non-JSONL batch file
    // and a wrong window are refused.
    let many: String = (0..50_001)
        .map(|i| format!("{}\n", chat_line(&format!("x{i}"), i, 1)))
        .collect();
    let (st, f) = c.upload("many.jsonl", "batch", many.as_bytes()).await;
    assert_eq!(st, 200, "{f}");
    let (_, b) = c
        .post("/v1/batches", json!({"input_file_id": f["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}))
        .await;
    let (done, _) = c.openai_wait(b["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["errors"]["data"][0]["code"], "too_many_requests");
    assert!(
        done["errors"]["data"][0]["message"]
            .as_str()
            .unwrap()
            .contains("50000"),
        "{done}"
    );
    let (st, e) = c.upload("in.csv", "batch", b"x").await;
    assert_eq!(st, 400);
    assert!(
        e["error"]["message"].as_str().unwrap().contains(".jsonl"),
        "{e}"
    );
    let (st, e) = c
        .post("/v1/batches", json!({"input_file_id": f["id"], "endpoint": "/v1/chat/completions", "completion_window": "1h"}))
        .await;
    assert_eq!(st, 400);
    assert_eq!(e["error"]["param"], "completion_window");
    let (st, e) = c.get("/v1/batches/batch_nope").await;
    assert_eq!(st, 404, "{e}");
}

#[tokio::test]
async fn partial_failure_goes_to_the_error_file_and_cancelling_cancels_the_rest() {
    let dir = replay_dir();
    let s = spawn(
        SimConfig {
            replay_mode: ReplayMode::Sample,
            batch: BatchSettings {
                errored: 0.3,
                expired: 0.2,
                ..BatchSettings::default()
            },
            ..config(&dir)
        },
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    let c = Client::new(&s);
    let lines: Vec<Value> = (0..200)
        .map(|i| chat_line(&format!("p{i}"), i, 1))
        .collect();
    let b = c.openai_batch(&lines).await;
    let (done, _) = c.openai_wait(b["id"].as_str().unwrap()).await;
    assert_eq!(
        done["status"], "expired",
        "a batch with expired lines ends expired"
    );
    let out = c.lines_of(&done["output_file_id"]).await;
    let err = c.lines_of(&done["error_file_id"]).await;
    assert_eq!(out.len() + err.len(), 200);
    assert_eq!(done["request_counts"]["completed"], out.len());
    assert_eq!(done["request_counts"]["failed"], err.len());
    let errored = err
        .iter()
        .filter(|l| l["response"]["status_code"] == 500)
        .count();
    let expired = err
        .iter()
        .filter(|l| l["error"]["code"] == "batch_expired")
        .count();
    assert_eq!(errored + expired, err.len());
    assert!((30..90).contains(&errored), "{errored}");
    assert!((15..65).contains(&expired), "{expired}");
    let mut ids: Vec<&str> = out
        .iter()
        .chain(&err)
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "every custom id once");

    // A batch that takes an hour, cancelled at once.
    let slow = spawn(
        SimConfig {
            batch: BatchSettings {
                delay: Duration::from_secs(3600),
                ..BatchSettings::default()
            },
            ..config(&dir)
        },
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    let c = Client::new(&slow);
    let b = c.openai_batch(&lines[..10]).await;
    let id = b["id"].as_str().unwrap();
    let (_, v) = c.get(&format!("/v1/batches/{id}")).await;
    assert_eq!(v["status"], "in_progress");
    let (st, v) = c.post(&format!("/v1/batches/{id}/cancel"), json!({})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "cancelling");
    let (done, _) = c.openai_wait(id).await;
    assert_eq!(done["status"], "cancelled");
    assert!(done["cancelled_at"].is_i64());
    let err = c.lines_of(&done["error_file_id"]).await;
    assert_eq!(err.len(), 10);
    assert!(err.iter().all(|l| l["error"]["code"] == "batch_cancelled"));
    let (st, _) = c.post(&format!("/v1/batches/{id}/cancel"), json!({})).await;
    assert_eq!(st, 400, "an ended batch cannot be cancelled");
    // The list, newest first, with a cursor.
    let b2 = c.openai_batch(&lines[10..12]).await;
    let (_, page) = c.get("/v1/batches?limit=1").await;
    assert_eq!(page["data"][0]["id"], b2["id"]);
    assert_eq!(page["has_more"], true);
    let (_, page) = c
        .get(&format!(
            "/v1/batches?limit=5&after={}",
            b2["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(page["data"][0]["id"], id);
    assert_eq!(page["has_more"], false);
    let (_, stats) = c.get("/_sim/stats").await;
    assert_eq!(stats["batches"]["apis"]["openai"]["cancelled"], 1);
    assert_eq!(
        stats["keys"]["m"]["replayed"],
        Value::Null,
        "nothing was answered"
    );
}

fn anthropic_request(id: &str, model: &str) -> Value {
    json!({"custom_id": id, "params": {"model": model, "max_tokens": 1,
           "messages": [{"role": "user", "content": prompt()}]}})
}

#[tokio::test]
async fn anthropic_message_batches_end_with_jsonl_results() {
    let dir = replay_dir();
    let s = spawn(config(&dir), "127.0.0.1:0").await.unwrap();
    let c = Client::new(&s);
    let mut requests: Vec<Value> = (0..10)
        .map(|i| anthropic_request(&format!("q-{i}"), "claude-m"))
        .collect();
    let mut bad = anthropic_request("bad_one", "claude-m");
    bad["params"]["temperature"] = json!(0.5);
    requests.push(bad);
    let (st, b) = c
        .post("/v1/messages/batches", json!({"requests": requests}))
        .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["type"], "message_batch");
    assert_eq!(b["processing_status"], "in_progress");
    assert_eq!(b["request_counts"]["processing"], 11);
    assert!(b["results_url"].is_null());
    let id = b["id"].as_str().unwrap();
    let done = loop {
        let (_, v) = c.get(&format!("/v1/messages/batches/{id}")).await;
        if v["processing_status"] == "ended" {
            break v;
        }
    };
    assert_eq!(
        done["request_counts"],
        json!({"processing": 0, "succeeded": 10, "errored": 1, "canceled": 0, "expired": 0})
    );
    let url = done["results_url"].as_str().unwrap();
    let (st, text) = c.text(url.split_once(&c.base).unwrap().1).await;
    assert_eq!(st, 200, "{text}");
    let results: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 11);
    let mut ratings: Vec<u8> = results
        .iter()
        .filter(|r| r["result"]["type"] == "succeeded")
        .map(|r| digit(&r["result"]["message"]["content"][0]["text"]))
        .collect();
    ratings.sort();
    assert_eq!(ratings, RATINGS);
    let e = results
        .iter()
        .find(|r| r["custom_id"] == "bad_one")
        .unwrap();
    assert_eq!(e["result"]["type"], "errored");
    assert_eq!(
        e["result"]["error"]["error"]["type"],
        "invalid_request_error"
    );
    assert!(e["result"]["error"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("temperature"));

    // Refused at creation: a repeated custom id, a bad one, too many requests.
    let twice = json!({"requests": [anthropic_request("x", "claude-m"), anthropic_request("x", "claude-m")]});
    let (st, e) = c.post("/v1/messages/batches", twice).await;
    assert_eq!(st, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Duplicate custom_id"),
        "{e}"
    );
    let (st, _) = c
        .post(
            "/v1/messages/batches",
            json!({"requests": [anthropic_request("a b", "claude-m")]}),
        )
        .await;
    assert_eq!(st, 400);
    let many: Vec<Value> = (0..100_001)
        .map(|i| json!({"custom_id": format!("m{i}"), "params": {}}))
        .collect();
    let (st, e) = c
        .post("/v1/messages/batches", json!({"requests": many}))
        .await;
    assert_eq!(st, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 100000"),
        "{e}"
    );
    // Results before the end are refused; a cancelled batch's requests are canceled.
    let slow = spawn(
        SimConfig {
            batch: BatchSettings {
                delay: Duration::from_secs(3600),
                ..BatchSettings::default()
            },
            ..config(&dir)
        },
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    let c = Client::new(&slow);
    let (_, b) = c
        .post(
            "/v1/messages/batches",
            json!({"requests": [anthropic_request("only", "claude-m")]}),
        )
        .await;
    let id = b["id"].as_str().unwrap();
    let (st, _) = c.get(&format!("/v1/messages/batches/{id}/results")).await;
    assert_eq!(st, 400);
    let (_, v) = c
        .post(&format!("/v1/messages/batches/{id}/cancel"), json!({}))
        .await;
    assert_eq!(v["processing_status"], "canceling");
    assert!(v["cancel_initiated_at"].is_string());
    let (_, v) = c.get(&format!("/v1/messages/batches/{id}")).await;
    assert_eq!(v["processing_status"], "ended");
    assert_eq!(v["request_counts"]["canceled"], 1);
    let (_, list) = c.get("/v1/messages/batches?limit=10").await;
    assert_eq!(list["data"][0]["id"], id);
    assert_eq!(list["has_more"], false);
    let (_, stats) = c.get("/_sim/stats").await;
    assert_eq!(stats["batches"]["apis"]["anthropic"]["created"], 1);
    assert_eq!(stats["batches"]["apis"]["anthropic"]["cancelled"], 1);
}

#[tokio::test]
async fn gemini_batch_mode_answers_inline_requests_in_order_with_their_metadata() {
    let dir = replay_dir();
    let s = spawn(config(&dir), "127.0.0.1:0").await.unwrap();
    let c = Client::new(&s);
    let request = |n: u64| {
        json!({"contents": [{"role": "user", "parts": [{"text": prompt()}]}],
               "generationConfig": {"maxOutputTokens": 1, "temperature": 0.1, "candidateCount": n}})
    };
    let inline: Vec<Value> = vec![
        json!({"request": request(5), "metadata": {"key": "g-0"}}),
        json!({"request": request(4), "metadata": {"key": "g-1"}}),
        json!({"request": request(1), "metadata": {"key": "g-2"}}),
        json!({"request": request(9), "metadata": {"key": "g-too-many"}}),
    ];
    let body = json!({"batch": {"displayName": "sweep", "inputConfig": {"requests": {"requests": inline}}}});
    let (st, op) = c
        .post("/v1beta/models/gemini-m:batchGenerateContent", body)
        .await;
    assert_eq!(st, 200, "{op}");
    let name = op["name"].as_str().unwrap();
    assert!(name.starts_with("batches/"));
    assert_eq!(op["metadata"]["state"], "BATCH_STATE_PENDING");
    assert_eq!(op["metadata"]["batchStats"]["requestCount"], "4");
    let done = loop {
        let (st, v) = c.get(&format!("/v1beta/{name}")).await;
        assert_eq!(st, 200, "{v}");
        if v["done"] == true {
            break v;
        }
    };
    assert_eq!(done["metadata"]["state"], "BATCH_STATE_SUCCEEDED");
    let responses = done["response"]["inlinedResponses"]["inlinedResponses"]
        .as_array()
        .unwrap();
    assert_eq!(responses.len(), 4);
    let keys: Vec<&Value> = responses.iter().map(|r| &r["metadata"]["key"]).collect();
    assert_eq!(keys, ["g-0", "g-1", "g-2", "g-too-many"]);
    let mut ratings: Vec<u8> = responses[..3]
        .iter()
        .flat_map(|r| r["response"]["candidates"].as_array().unwrap().clone())
        .map(|cand| digit(&cand["content"]["parts"][0]["text"]))
        .collect();
    ratings.sort();
    assert_eq!(ratings, RATINGS);
    assert_eq!(
        responses[3]["error"]["code"], 3,
        "candidateCount 9 is over the cap"
    );
    assert_eq!(done["metadata"]["batchStats"]["failedRequestCount"], "1");
    // An unknown field refuses the whole batch, naming the request.
    let mut r = request(1);
    r["generationConfig"]["bogus"] = json!(1);
    let body = json!({"batch": {"displayName": "x", "inputConfig": {"requests": {"requests": [{"request": r}]}}}});
    let (st, e) = c
        .post("/v1beta/models/gemini-m:batchGenerateContent", body)
        .await;
    assert_eq!(st, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("requests[0]"),
        "{e}"
    );
    let (_, list) = c.get("/v1beta/batches").await;
    assert_eq!(list["operations"].as_array().unwrap().len(), 1);
    let (st, _) = c.post(&format!("/v1beta/{name}:cancel"), json!({})).await;
    assert_eq!(st, 400, "an ended batch cannot be cancelled");
    let (_, stats) = c.get("/_sim/stats").await;
    assert_eq!(stats["batches"]["apis"]["gemini"]["created"], 1);
    assert_eq!(stats["batches"]["apis"]["gemini"]["lines"], 4);
}

/// Benchmark (`cargo test -p moralsweep-simulator --test batch -- --ignored
/// --nocapture`): a full OpenAI batch of 50,000 lines (sample mode) through
/// upload, answering and the output file; prints the time of each step.
#[tokio::test]
#[ignore]
async fn bench_a_50000_line_openai_batch() {
    let dir = replay_dir();
    let s = spawn(
        SimConfig {
            replay_mode: ReplayMode::Sample,
            ..config(&dir)
        },
        "127.0.0.1:0",
    )
    .await
    .unwrap();
    let c = Client::new(&s);
    let lines: Vec<Value> = (0..50_000)
        .map(|i| chat_line(&format!("b{i}"), i * 1_000_003, 1))
        .collect();
    let t0 = std::time::Instant::now();
    let b = c.openai_batch(&lines).await;
    let t_create = t0.elapsed();
    let (done, _) = c.openai_wait(b["id"].as_str().unwrap()).await;
    let t_done = t0.elapsed();
    let out = c.lines_of(&done["output_file_id"]).await;
    let t_read = t0.elapsed();
    assert_eq!(out.len(), 50_000);
    println!(
        "50,000-line OpenAI batch: upload + create {:.2} s, answered {:.2} s ({:.0} lines/s), output file read {:.2} s",
        t_create.as_secs_f64(),
        (t_done - t_create).as_secs_f64(),
        50_000.0 / (t_done - t_create).as_secs_f64(),
        (t_read - t_done).as_secs_f64()
    );
}

#[tokio::test]
async fn gemini_batches_read_an_uploaded_file_and_write_a_responses_file() {
    let dir = replay_dir();
    let s = spawn(config(&dir), "127.0.0.1:0").await.unwrap();
    let c = Client::new(&s);
    let request = json!({"contents": [{"role": "user", "parts": [{"text": prompt()}]}],
                         "generationConfig": {"maxOutputTokens": 1, "temperature": 0.1, "candidateCount": 5}});
    let upload = |text: String| {
        let c = &c;
        async move {
            let start = c
                .http
                .post(format!("{}/upload/v1beta/files", c.base))
                .header("x-goog-upload-protocol", "resumable")
                .header("x-goog-upload-command", "start")
                .header(
                    "x-goog-upload-header-content-length",
                    text.len().to_string(),
                )
                .json(&json!({"file": {"displayName": "in", "mimeType": "jsonl"}}))
                .send()
                .await
                .unwrap();
            assert_eq!(start.status(), 200);
            let url = start.headers()["x-goog-upload-url"]
                .to_str()
                .unwrap()
                .to_string();
            let (half, rest) = text.split_at(text.len() / 2);
            let mut offset = 0;
            let mut last = Value::Null;
            for (chunk, command) in [(half, "upload"), (rest, "upload, finalize")] {
                let r = c
                    .http
                    .post(&url)
                    .header("x-goog-upload-command", command)
                    .header("x-goog-upload-offset", offset.to_string())
                    .body(chunk.to_string())
                    .send()
                    .await
                    .unwrap();
                let status = r.headers()["x-goog-upload-status"]
                    .to_str()
                    .unwrap()
                    .to_string();
                assert_eq!(
                    status,
                    if command == "upload" {
                        "active"
                    } else {
                        "final"
                    }
                );
                offset += chunk.len();
                last = r.json().await.unwrap();
            }
            last["file"]["name"].as_str().unwrap().to_string()
        }
    };
    let text: String = (0..2)
        .map(|i| format!("{}\n", json!({"key": format!("f-{i}"), "request": request})))
        .collect();
    let name = upload(text).await;
    let (st, f) = c.get(&format!("/v1beta/{name}")).await;
    assert_eq!(st, 200, "{f}");
    assert_eq!(f["state"], "ACTIVE");
    let body = json!({"batch": {"displayName": "file", "inputConfig": {"fileName": name}}});
    let (st, op) = c
        .post("/v1beta/models/gemini-m:batchGenerateContent", body)
        .await;
    assert_eq!(st, 200, "{op}");
    let done = loop {
        let (_, v) = c
            .get(&format!("/v1beta/{}", op["name"].as_str().unwrap()))
            .await;
        if v["done"] == true {
            break v;
        }
    };
    assert_eq!(done["metadata"]["state"], "BATCH_STATE_SUCCEEDED");
    let out = done["response"]["responsesFile"].as_str().unwrap();
    let (st, text) = c.text(&format!("/v1beta/{out}:download?alt=media")).await;
    assert_eq!(st, 200, "{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.iter().map(|l| l["key"].clone()).collect::<Vec<_>>(),
        ["f-0", "f-1"]
    );
    let mut ratings: Vec<u8> = lines
        .iter()
        .flat_map(|l| l["response"]["candidates"].as_array().unwrap().clone())
        .map(|cand| digit(&cand["content"]["parts"][0]["text"]))
        .collect();
    ratings.sort();
    assert_eq!(ratings, RATINGS, "deal mode through a file batch");
    let (st, _) = c.text(&format!("/v1beta/{name}:download?alt=media")).await;
    assert_eq!(st, 400, "an uploaded file cannot be downloaded");

    // A line that is not a request fails the batch, naming the line.
    let name = upload(format!(
        "{}\nnot json\n",
        json!({"key": "ok", "request": request})
    ))
    .await;
    let body = json!({"batch": {"displayName": "bad", "inputConfig": {"fileName": name}}});
    let (_, op) = c
        .post("/v1beta/models/gemini-m:batchGenerateContent", body)
        .await;
    let (_, v) = c
        .get(&format!("/v1beta/{}", op["name"].as_str().unwrap()))
        .await;
    assert_eq!(v["metadata"]["state"], "BATCH_STATE_FAILED");
    assert_eq!(v["done"], true);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("line 2"),
        "{v}"
    );
    let body = json!({"batch": {"displayName": "x", "inputConfig": {"fileName": "files/none"}}});
    let (st, _) = c
        .post("/v1beta/models/gemini-m:batchGenerateContent", body)
        .await;
    assert_eq!(st, 400);
}
