//! Google Vertex AI (`provider = "vertex"`) end to end, real processes over
//! real HTTP: `moralsweep sim` plays Vertex AI, Google's token endpoint and
//! the metadata server; `moralsweep run` asks it through the worker's
//! provider with Application Default Credentials.
//!
//! - a 100 x 30 x 10 deal replay through Vertex AI (credentials from the
//!   metadata server, as GKE Workload Identity gives them) reproduces the
//!   published S, R and sigma-bar to 1e-9 with every slot once;
//! - the same through a service-account key, with 10% of the requests
//!   throttled (429 RESOURCE_EXHAUSTED) and bearers living 20 s: nothing is
//!   lost, the sweep finishes, and no expired bearer was ever sent (they
//!   are renewed ahead of expiry, in the background);
//! - a wrong key, expired bearers and a missing permission each stop the
//!   model with a message naming the model, the cloud and what to fix,
//!   after a bounded number of requests;
//! - the official SDKs (`google-genai` with `vertexai=True`, `anthropic`'s
//!   `AnthropicVertex`) complete requests against the simulator, and the
//!   worker's bodies validate against their request types.
//!
//! The service-account keys are generated here with the `openssl` CLI; no
//! private key is committed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use moralsweep_common::prompt::{persona_prompt, self_prompt};
use moralsweep_common::{ModelSpec, ITEMS};
use moralsweep_testsupport::otlp::OtlpReceiver;
use moralsweep_testsupport::reference::reference_dir;
use moralsweep_worker::providers::vertex::Vertex;
use moralsweep_worker::providers::CompletionRequest;
use serde_json::{json, Value};

use crate::common::exact::{assert_every_slot_once, assert_reproduces, rows_in, KEY};
use crate::common::simproc::{self, python_script, python_with, SimProc};

const PROJECT: &str = "audit-project";
const EMAIL: &str = "sweeper@audit-project.iam.gserviceaccount.com";

/// The sweeps of this file run one at a time (see `sim_exact.rs`).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh 2048-bit RSA private key, PKCS#8 PEM.
fn rsa_key(dir: &Path, name: &str) -> String {
    let path = dir.join(format!("{name}.pem"));
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&path)
        .output()
        .expect("the openssl CLI runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    pem
}

/// Writes a service-account key file of [`EMAIL`] with `pem`, its
/// `token_uri` at `token_uri`.
fn service_account(path: &Path, pem: &str, token_uri: &str) -> PathBuf {
    let v = json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": pem,
        "client_email": EMAIL,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    });
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    path.to_path_buf()
}

/// A simulator knowing the service account of `sa` (written with a
/// placeholder `token_uri`, then pointed at the simulator's `/token`).
fn sim_with_account(sa: &Path, pem: &str, args: &[&str]) -> SimProc {
    service_account(sa, pem, "http://placeholder.invalid/token");
    let mut all = vec!["--gcp-service-account", sa.to_str().unwrap()];
    all.extend_from_slice(args);
    let sim = SimProc::start(&all);
    service_account(sa, pem, &format!("{}/token", sim.url));
    sim
}

/// Writes `dir/s.toml`: a persona-mode sweep at temperature 0.1 of one
/// Vertex AI model `model` in `project`, served by `sim`.
fn write_spec(dir: &Path, sim: &SimProc, personas: usize, reps: u32, model: &str, extra: &str) {
    let reference = reference_dir().expect("reference data");
    let spec = format!(
        "name = \"vertex\"\npersonas = \"{personas_file}\"\npersona_count = {personas}\nrepetitions = {reps}\n\
         temperature = 0.1\nmodes = [\"persona\"]\noutput = \"out\"\nseed = 7\n\n\
         [[model]]\nkey = \"{KEY}\"\nprovider = \"vertex\"\nproject = \"{PROJECT}\"\nlocation = \"us-central1\"\n\
         model = \"{model}\"\nbase_url = \"{url}\"\n{extra}\n",
        personas_file = reference.join("personas.json").display(),
        url = sim.url,
    );
    std::fs::write(dir.join("s.toml"), spec).unwrap();
}

/// `moralsweep run s.toml` in `dir` with Google's credential variables
/// set as `env` says (the others removed), and HOME at `dir` (no gcloud
/// well-known file).
fn run(dir: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(simproc::bin());
    c.args([
        "run",
        "s.toml",
        "--workers",
        "4",
        "--concurrency",
        "64",
        "--quiet",
    ])
    .current_dir(dir)
    .env("HOME", dir)
    .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
    .env_remove("CLOUDSDK_CONFIG")
    .env_remove("GCE_METADATA_HOST");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn gcp_stats(sim: &SimProc) -> Value {
    let r = simproc::request(sim.addr(), "GET", "/_sim/gcp", &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

fn count(v: &Value, path: &str) -> u64 {
    v.pointer(path).and_then(Value::as_u64).unwrap_or(0)
}

#[test]
fn a_deal_replay_through_vertex_with_workload_identity_reproduces_the_published_metrics() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let sim = simproc::deal_replay_with(
        &reference.join("sampling/insecure-code"),
        &reference.join("personas.json"),
        &["--gcp-project", PROJECT],
    );
    write_spec(
        tmp.path(),
        &sim,
        100,
        10,
        KEY,
        "rpm = 6000000\ntimeout_secs = 10",
    );
    let out = run(tmp.path(), &[("GCE_METADATA_HOST", sim.addr())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows_in(&tmp.path().join("out"), "temp01");
    assert_every_slot_once(&rows, 100, 10);
    assert!(rows.iter().all(|r| r.failures == 0 && r.rating >= 0));
    assert_reproduces(&reference, &rows);
    let k = &sim.stats()["keys"][KEY];
    assert_eq!(k["replayed"], 30_000, "{k}");
    assert_eq!(k["requests"], 30_000, "{k}");
    let g = gcp_stats(&sim);
    // One bearer per worker's provider at most: fetched once, shared.
    let issued = count(&g, "/tokens_issued/metadata");
    assert!((1..=8).contains(&issued), "{g}");
    assert_eq!(count(&g, "/bearers_refused/expired"), 0, "{g}");
}

#[test]
fn throttled_with_twenty_second_bearers_a_service_account_sweep_loses_nothing() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let pem = rsa_key(tmp.path(), "key");
    let sa = tmp.path().join("sa.json");
    let replay = reference.join("sampling/insecure-code");
    let personas = reference.join("personas.json");
    let sim = sim_with_account(
        &sa,
        &pem,
        &[
            "--replay",
            replay.to_str().unwrap(),
            "--personas",
            personas.to_str().unwrap(),
            "--replay-mode",
            "deal",
            "--fault-rate",
            "0.1",
            "--faults",
            "429",
            "--seed",
            "3",
            "--gcp-token-lifetime-secs",
            "20",
            "--gcp-project",
            PROJECT,
        ],
    );
    // 500 requests a second at most: the sweep outlives several bearers.
    write_spec(
        tmp.path(),
        &sim,
        100,
        10,
        KEY,
        "rpm = 30000\ntimeout_secs = 10",
    );
    // Spans exported and logs written as JSON at info: the redaction checks
    // below see everything the run says about itself.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rx = rt.block_on(OtlpReceiver::start()).unwrap();
    let endpoint = rx.endpoint("http/protobuf");
    let t0 = std::time::Instant::now();
    let out = run(
        tmp.path(),
        &[
            ("GOOGLE_APPLICATION_CREDENTIALS", sa.to_str().unwrap()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("MORALSWEEP_LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
    );
    let took = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let rows = rows_in(&tmp.path().join("out"), "temp01");
    assert_every_slot_once(&rows, 100, 10);
    assert!(rows.iter().all(|r| r.failures == 0 && r.rating >= 0));
    assert_reproduces(&reference, &rows);
    let k = &sim.stats()["keys"][KEY];
    assert_eq!(k["replayed"], 30_000, "{k}");
    let throttled = count(k, "/faults/429");
    let g = gcp_stats(&sim);
    eprintln!(
        "{took:?}: {throttled} throttled of {} requests; {g}",
        k["requests"]
    );
    assert!(throttled > 2_000, "{k}");
    // Bearers were renewed while the sweep ran, before they expired: none
    // was refused, none sent after its end.
    let issued = count(&g, "/tokens_issued/jwt-bearer");
    assert!(
        issued as f64 >= took.as_secs_f64() / 20.0,
        "{issued} bearers in {took:?}: {g}"
    );
    assert_eq!(g["bearers_refused"], json!({}), "{g}");
    assert_eq!(count(&g, "/assertions_refused"), 0, "{g}");
    // No secret reached a log line, an exported span or a file: not the
    // private key, not an assertion (an RS256 JWT starts with this header),
    // not a bearer (the simulator's all start `ya29.`).
    assert!(!rx.spans().is_empty(), "no span was exported");
    let key_line = pem.lines().nth(1).unwrap();
    let secrets = ["ya29.", "PRIVATE KEY", key_line, "eyJhbGciOiJSUzI1NiI"];
    for secret in secrets {
        assert!(!stderr.contains(secret), "{secret} in the log: {stderr}");
        assert!(!rx.raw_contains(secret), "{secret} was exported");
    }
    for f in walk(&tmp.path().join("out")) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} in {}", f.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A two-persona sweep of one Vertex model that must stop: the run fails,
/// its message names the model, the cloud and `wants`; returns stderr.
fn stops(sim: &SimProc, tmp: &Path, env: &[(&str, &str)], wants: &[&str]) -> String {
    write_spec(tmp, sim, 2, 1, KEY, "timeout_secs = 10");
    let out = run(tmp, env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the run succeeded: {stderr}");
    let quoted = format!("\"{KEY}\"");
    for w in [quoted.as_str(), "Vertex AI"].iter().chain(wants) {
        assert!(stderr.contains(w), "{w:?} not in: {stderr}");
    }
    assert!(!stderr.contains("ya29."), "{stderr}");
    stderr
}

#[test]
fn a_wrong_key_an_expired_bearer_and_a_missing_permission_stop_the_model() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one = serial();
    let replay = reference.join("sampling/insecure-code");
    let personas = reference.join("personas.json");
    let base = [
        "--replay",
        replay.to_str().unwrap(),
        "--personas",
        personas.to_str().unwrap(),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let pem = rsa_key(tmp.path(), "key");

    // A key the service account does not have: the token endpoint refuses
    // its signature.
    let sim = sim_with_account(&tmp.path().join("known.json"), &pem, &base);
    let other = rsa_key(tmp.path(), "other");
    let wrong = service_account(
        &tmp.path().join("wrong.json"),
        &other,
        &format!("{}/token", sim.url),
    );
    let d = tempfile::tempdir().unwrap();
    let e = stops(
        &sim,
        d.path(),
        &[("GOOGLE_APPLICATION_CREDENTIALS", wrong.to_str().unwrap())],
        &[
            "Invalid JWT Signature",
            EMAIL,
            "GOOGLE_APPLICATION_CREDENTIALS",
        ],
    );
    assert!(!e.contains("BEGIN PRIVATE KEY"), "{e}");
    let g = gcp_stats(&sim);
    // At most one refused assertion per slot (60): nothing is retried.
    assert!((1..=60).contains(&count(&g, "/assertions_refused")), "{g}");
    assert_eq!(
        sim.stats()["keys"][KEY]["requests"].as_u64().unwrap_or(0),
        0
    );

    // Bearers that are expired when they arrive: one fresh try, then stop.
    let sa = tmp.path().join("sa.json");
    let mut args = base.to_vec();
    args.extend(["--gcp-token-lifetime-secs", "0"]);
    let sim = sim_with_account(&sa, &pem, &args);
    let d = tempfile::tempdir().unwrap();
    stops(
        &sim,
        d.path(),
        &[("GOOGLE_APPLICATION_CREDENTIALS", sa.to_str().unwrap())],
        &["401 UNAUTHENTICATED", "freshly fetched", EMAIL],
    );
    let refused = count(&gcp_stats(&sim), "/bearers_refused/expired");
    // At most two per slot (the bearer and a fresh one), then the stop.
    assert!(
        (2..=120).contains(&refused),
        "{refused} expired bearers refused"
    );

    // A project the service account has no role in.
    let mut args = base.to_vec();
    args.extend(["--gcp-project", "another-project"]);
    let sim = sim_with_account(&sa, &pem, &args);
    let d = tempfile::tempdir().unwrap();
    let (model, project) = (format!("{KEY:?}"), format!("{PROJECT:?}"));
    stops(
        &sim,
        d.path(),
        &[("GOOGLE_APPLICATION_CREDENTIALS", sa.to_str().unwrap())],
        &[
            "aiplatform.endpoints.predict",
            model.as_str(),
            project.as_str(),
            "roles/aiplatform.user",
        ],
    );
    let denied = count(&gcp_stats(&sim), "/permission_denied");
    assert!((1..=60).contains(&denied), "{denied} requests denied");
}

#[test]
fn official_sdks_complete_requests_on_the_simulated_vertex() {
    if !python_with("google.genai, google.oauth2, anthropic") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pem = rsa_key(tmp.path(), "key");
    let sa = tmp.path().join("sa.json");
    let sim = sim_with_account(&sa, &pem, &[]);
    let denied = SimProc::start(&[
        "--gcp-service-account",
        sa.to_str().unwrap(),
        "--gcp-project",
        "another-project",
    ]);
    // The same account with its token_uri at the denied simulator (a
    // bearer is good only where it was issued).
    let sa_denied = service_account(
        &tmp.path().join("sa-denied.json"),
        &pem,
        &format!("{}/token", denied.url),
    );
    let out = Command::new("python3")
        .arg(python_script("vertex_sdk_check.py"))
        .args([&sim.url, sa.to_str().unwrap(), PROJECT, &denied.url])
        .arg(&sa_denied)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("vertex checks passed"), "{stdout}");
    let g = gcp_stats(&sim);
    assert!(count(&g, "/tokens_issued/jwt-bearer") >= 1, "{g}");
    assert_eq!(count(&g, "/assertions_refused"), 0, "{g}");
}

fn vertex(model: &str, fields: Value) -> Vertex {
    let mut v = json!({"key": "m", "provider": "vertex", "model": model,
                       "project": PROJECT, "location": "us-central1"});
    for (k, x) in fields.as_object().unwrap() {
        v[k] = x.clone();
    }
    let spec: ModelSpec = serde_json::from_value(v).unwrap();
    Vertex::new(&spec).unwrap()
}

fn request(
    prompt: String,
    max_tokens: u32,
    temperature: Option<f64>,
    top: Option<u32>,
) -> CompletionRequest {
    CompletionRequest {
        prompt,
        max_tokens,
        temperature,
        seed: Some(12345),
        top_logprobs: top,
    }
}

#[test]
fn vertex_request_bodies_validate_against_the_sdk_types() {
    if !python_with("anthropic, google.genai, pydantic") {
        return;
    }
    let persona = persona_prompt("a retired nurse", &ITEMS[3]);
    let mut manifest = Vec::new();
    let tmp = tempfile::tempdir().unwrap();
    let mut add = |name: &str, ty: &str, valid: bool, body: Value| {
        let file = tmp.path().join(format!("{name}.json"));
        std::fs::write(&file, serde_json::to_vec(&body).unwrap()).unwrap();
        manifest.push(json!({"name": name, "type": ty, "file": file,
                             "expect": if valid { "valid" } else { "invalid" }}));
    };
    for (cfg, fields) in [
        ("gemini", json!({})),
        ("gemini-thinking", json!({"thinking_budget": 1024})),
    ] {
        let v = vertex("gemini-2.5-flash", fields);
        let t = Some(0.1);
        for (mode, req, n) in [
            ("persona", request(persona.clone(), 1, t, None), 1),
            ("self", request(self_prompt(&ITEMS[17]), 1, t, None), 1),
            ("fallback", request(persona.clone(), 64, t, None), 1),
            (
                "logprob",
                request(persona.clone(), 1, Some(1.0), Some(20)),
                1,
            ),
            ("samples", request(persona.clone(), 1, t, None), 10),
        ] {
            add(
                &format!("vertex-{cfg}-{mode}"),
                "gemini.GenerateContentRequest",
                true,
                v.body_n(&req, n),
            );
        }
        add(
            &format!("vertex-{cfg}-count"),
            "gemini.CountTokensRequest",
            true,
            v.count_body(&persona),
        );
    }
    for (cfg, fields) in [
        ("claude", json!({"temperature": "provider-default"})),
        (
            "claude-thinking",
            json!({"temperature": "provider-default", "thinking_budget": 2048}),
        ),
    ] {
        let v = vertex("claude-sonnet-4@20250514", fields);
        for (mode, req) in [
            ("persona", request(persona.clone(), 1, None, None)),
            ("self", request(self_prompt(&ITEMS[17]), 1, None, None)),
            ("fallback", request(persona.clone(), 64, None, None)),
        ] {
            let body = v.body_n(&req, 1);
            assert_eq!(body["anthropic_version"], "vertex-2023-10-16");
            assert!(body.get("model").is_none(), "{body}");
            add(
                &format!("vertex-{cfg}-{mode}"),
                "anthropic.VertexMessageCreateParams",
                true,
                body,
            );
        }
        add(
            &format!("vertex-{cfg}-count"),
            "anthropic.VertexMessageCountTokensParams",
            true,
            v.count_body(&persona),
        );
    }
    // Negative controls: a field the SDK lacks, a model left in the body.
    let v = vertex(
        "claude-sonnet-4@20250514",
        json!({"temperature": "provider-default"}),
    );
    let mut with_model = v.body_n(&request(persona.clone(), 1, None, None), 1);
    with_model["model"] = json!("claude-sonnet-4@20250514");
    add(
        "vertex-claude-model-in-body",
        "anthropic.VertexMessageCreateParams",
        false,
        with_model,
    );
    let v = vertex(
        "gemini-2.5-flash",
        json!({"extra": {"generationConfig": {"bestOf": 2}}}),
    );
    add(
        "vertex-gemini-unknown-field",
        "gemini.GenerateContentRequest",
        false,
        v.body_n(&request(persona.clone(), 1, Some(0.1), None), 1),
    );
    let file = tmp.path().join("manifest.json");
    std::fs::write(&file, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(python_script("validate_sdk_requests.py"))
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("checked {} bodies, 0 problems", manifest.len())),
        "{stdout}"
    );
}
