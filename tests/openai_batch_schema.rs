//! OpenAI's Batch API as the simulator speaks it matches OpenAI's published
//! OpenAPI description (`../shared/specs/openai-openapi.yaml`): every
//! input line's body as the worker's OpenAI batch client writes it (the
//! `openai` adapter's Chat Completions bodies, `n` included) validates against `CreateChatCompletionRequest` with only
//! declared fields; the `File` objects against `OpenAIFile`; the `Batch`
//! objects in every state (validating, in progress, finalizing, completed,
//! failed with errors, expired, cancelling, cancelled) against `Batch`; the
//! list against `ListBatchesResponse`; and the bodies in the output and
//! error files against `CreateChatCompletionResponse` and `ErrorResponse`.
//! The validator is `tests/python/validate_openai.py`.

mod common;
use common::simproc;

use std::path::Path;

use moralsweep_common::ModelSpec;
use moralsweep_testsupport::reference::reference_dir;
use moralsweep_worker::providers::batch::openai::OpenAiBatch;
use moralsweep_worker::providers::batch::BatchItem;
use moralsweep_worker::providers::openai::{Flavor, OpenAi};
use moralsweep_worker::providers::CompletionRequest;
use serde_json::{json, Value};
use simproc::{python_with, request, request_bytes, SchemaManifest, SimProc};

const KEY_ENV: &str = "MORALSWEEP_BATCH_SCHEMA_KEY";
const BOUNDARY: &str = "moralsweep-schema-boundary";

fn get(sim: &SimProc, path: &str) -> (u16, String) {
    let r = request(
        sim.addr(),
        "GET",
        path,
        &[("authorization", "Bearer sk")],
        "",
    );
    (r.status, r.body)
}

fn post(sim: &SimProc, path: &str, body: &Value) -> Value {
    let r = request(
        sim.addr(),
        "POST",
        path,
        &[("authorization", "Bearer sk")],
        &body.to_string(),
    );
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

fn upload(sim: &SimProc, jsonl: &str) -> Value {
    let body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\
         Content-Type: application/jsonl\r\n\r\n{jsonl}\r\n--{BOUNDARY}--\r\n"
    );
    let r = request_bytes(
        sim.addr(),
        "POST",
        "/v1/files",
        &[("authorization", "Bearer sk")],
        Some(&format!("multipart/form-data; boundary={BOUNDARY}")),
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

fn create(sim: &SimProc, file: &Value) -> Value {
    post(
        sim,
        "/v1/batches",
        &json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions",
                "completion_window": "24h", "metadata": {"sweep": "schema"}}),
    )
}

fn retrieve(sim: &SimProc, id: &Value) -> Value {
    let (s, b) = get(sim, &format!("/v1/batches/{}", id.as_str().unwrap()));
    assert_eq!(s, 200, "{b}");
    serde_json::from_str(&b).unwrap()
}

/// The batch input lines of the rating protocol's requests as the
/// worker's OpenAI batch client writes them (the `openai` adapter's bodies):
/// one-token attempts with a seed, several samples (`n`), the longer
/// fallback, and logprob mode.
fn input_lines(model: &str) -> Vec<Value> {
    std::env::set_var(KEY_ENV, "sk-schema");
    let spec: ModelSpec = serde_json::from_value(
        json!({"key": "m", "provider": "openai", "model": model, "api_key_env": KEY_ENV}),
    )
    .unwrap();
    let client = OpenAiBatch::new(OpenAi::new(&spec, Flavor::openai()).unwrap());
    let prompt =
        moralsweep_common::prompt::persona_prompt("a retired nurse", &moralsweep_common::ITEMS[3]);
    let item = |i: usize, max_tokens, seed, top_logprobs, n| BatchItem {
        custom_id: format!("slot-{i}"),
        req: CompletionRequest {
            prompt: prompt.clone(),
            max_tokens,
            temperature: Some(0.1),
            seed,
            top_logprobs,
        },
        n,
    };
    let items = [
        item(0, 1, Some(12_000_000), None, 1),
        item(1, 64, None, None, 1),
        item(2, 1, Some(34_000_000), Some(20), 1),
        item(3, 1, Some(56_000_000), None, 10),
    ];
    client
        .input_file(&items)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn jsonl(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn file_lines(sim: &SimProc, id: &Value) -> Vec<Value> {
    let (s, text) = get(sim, &format!("/v1/files/{}/content", id.as_str().unwrap()));
    assert_eq!(s, 200, "{text}");
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_batch_api_matches_the_openai_schema() {
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
    let replay = reference.join("sampling/insecure-code");
    let personas = reference.join("personas.json");
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "--replay".to_string(),
            replay.display().to_string(),
            "--personas".to_string(),
            personas.display().to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let start = |extra: &[&'static str]| {
        let a = args(extra);
        SimProc::start(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let lines = input_lines("gpt-4o-misaligned");
    for (i, l) in lines.iter().enumerate() {
        m.add(
            "CreateChatCompletionRequest",
            &format!("line-body-{i}"),
            &l["body"],
            true,
        );
    }

    // A batch through its whole life, with partial failure.
    let sim = start(&["--batch-errored", "0.25", "--batch-expired", "0.25"]);
    let mut many = lines.clone();
    for i in 0..40 {
        let mut l = lines[0].clone();
        l["custom_id"] = json!(format!("extra-{i}"));
        l["body"]["seed"] = json!(1_000_000 * (i + 100));
        many.push(l);
    }
    let file = upload(&sim, &jsonl(&many));
    m.add("OpenAIFile", "input-file", &file, true);
    let (s, again) = get(&sim, &format!("/v1/files/{}", file["id"].as_str().unwrap()));
    assert_eq!(s, 200);
    m.add(
        "OpenAIFile",
        "input-file-retrieved",
        &serde_json::from_str(&again).unwrap(),
        true,
    );
    let b = create(&sim, &file);
    assert_eq!(b["status"], "validating");
    m.add("Batch", "validating", &b, true);
    let mut states = vec![];
    let done = loop {
        let v = retrieve(&sim, &b["id"]);
        let status = v["status"].as_str().unwrap().to_string();
        if !states.contains(&status) {
            m.add("Batch", &status, &v, true);
            states.push(status.clone());
        }
        if ["completed", "expired", "failed"].contains(&status.as_str()) {
            break v;
        }
    };
    assert_eq!(done["status"], "expired", "{done}");
    for (kind, id) in [
        ("output", &done["output_file_id"]),
        ("error", &done["error_file_id"]),
    ] {
        let (s, f) = get(&sim, &format!("/v1/files/{}", id.as_str().unwrap()));
        assert_eq!(s, 200);
        m.add(
            "OpenAIFile",
            &format!("{kind}-file"),
            &serde_json::from_str(&f).unwrap(),
            true,
        );
        for (i, l) in file_lines(&sim, id).iter().enumerate() {
            match l["response"]["status_code"].as_u64() {
                Some(200) => m.add(
                    "CreateChatCompletionResponse",
                    &format!("{kind}-{i}"),
                    &l["response"]["body"],
                    false,
                ),
                Some(_) => m.add(
                    "ErrorResponse",
                    &format!("{kind}-{i}"),
                    &l["response"]["body"],
                    true,
                ),
                None => assert_eq!(l["error"]["code"], "batch_expired", "{l}"),
            }
        }
    }

    // Failed validation, with errors naming lines.
    let mut bad = lines[0].clone();
    bad["body"]["bogus"] = json!(true);
    let file = upload(
        &sim,
        &jsonl(&[lines[0].clone(), bad, json!("not an object")]),
    );
    let b = create(&sim, &file);
    let failed = retrieve(&sim, &b["id"]);
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["errors"]["data"].as_array().unwrap().len(), 2);
    m.add("Batch", "failed", &failed, true);
    let (s, list) = get(&sim, "/v1/batches?limit=2");
    assert_eq!(s, 200);
    m.add(
        "ListBatchesResponse",
        "list",
        &serde_json::from_str(&list).unwrap(),
        true,
    );

    // Cancelling an hour-long batch.
    let slow = start(&["--batch-delay-ms", "3600000"]);
    let file = upload(&slow, &jsonl(&lines));
    let b = create(&slow, &file);
    m.add("Batch", "in_progress", &retrieve(&slow, &b["id"]), true);
    let c = post(
        &slow,
        &format!("/v1/batches/{}/cancel", b["id"].as_str().unwrap()),
        &json!({}),
    );
    assert_eq!(c["status"], "cancelling");
    m.add("Batch", "cancelling", &c, true);
    let done = retrieve(&slow, &b["id"]);
    assert_eq!(done["status"], "cancelled");
    m.add("Batch", "cancelled", &done, true);
    // Errors of the batch endpoints.
    let r = request(slow.addr(), "GET", "/v1/batches/batch_none", &[], "");
    assert_eq!(r.status, 404);
    m.add(
        "ErrorResponse",
        "no-batch",
        &serde_json::from_str(&r.body).unwrap(),
        true,
    );
    let r = request(
        slow.addr(),
        "POST",
        &format!("/v1/batches/{}/cancel", b["id"].as_str().unwrap()),
        &[],
        "{}",
    );
    assert_eq!(r.status, 400);
    m.add(
        "ErrorResponse",
        "cancel-ended",
        &serde_json::from_str(&r.body).unwrap(),
        true,
    );

    m.assert_valid(&spec_file);
    for want in ["finalizing", "expired"] {
        assert!(states.iter().any(|s| s == want), "{states:?}");
    }
}
