//! Azure OpenAI (`provider = "azure-openai"`) through the real binary
//! against `moralsweep sim` playing the resource and Entra ID:
//!
//! - a 100 x 30 x 10 deal replay through the v1 API with a key reproduces
//!   the published metrics to 1e-9, every slot once;
//! - the same through the deployments route (`api_version`) with AKS
//!   Workload Identity, bearer tokens that last 20 s, a federated token
//!   file that rotates every 5 s (each copy valid for 15 s, so a worker that
//!   read it once would fail) and 10% throttling: nothing lost, tokens
//!   refreshed in the background;
//! - a client secret and a managed identity (IMDS) authenticate too;
//! - a wrong key, a wrong client secret, an expired federated token, a
//!   missing role, an unknown deployment and a refused api-version each
//!   stop the model with a message naming the model, Azure and what to fix,
//!   after a bounded number of requests;
//! - no key, secret, assertion or bearer token in any log line or file;
//! - the request bodies are the `openai` SDK's `CompletionCreateParams`
//!   (the Azure client's), and the official `openai` SDK's `AzureOpenAI`
//!   (key and `azure_ad_token_provider`) and `OpenAI` on the v1 API
//!   complete requests against the simulator (`tests/python/azure_sdk_check.py`).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::common::exact::{assert_every_slot_once, assert_reproduces, rows_of, KEY};
use super::common::simproc::{python_script, python_with, request, SimProc};
use super::common::{bin, files_containing};
use moralsweep_testsupport::reference::reference_dir;

const KEY_VAR: &str = "MORALSWEEP_AZURE_TEST_KEY";
const API_KEY: &str = "az-key-5f1e0c9a7b3d2e4f6a8b0c1d";
const SECRET_VAR: &str = "MORALSWEEP_AZURE_TEST_SECRET";
const SECRET: &str = "az-secret-Qx8~r2Vb7Lm4Np0Zt6Wy";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0b7c4a1e-3f2d-4e5a-9b8c-7d6e5f4a3b2c";

/// Every variable of the Azure credential chain, cleared before a run.
const AZURE_VARS: &[&str] = &[
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
];

/// The sweeps of this file run one at a time (each is thousands of
/// requests a second).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A projected service-account token as AKS mounts it: a JWT for the
/// audience `api://AzureADTokenExchange`, ending `valid_secs` from now.
fn service_account_jwt(valid_secs: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let part = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        part(json!({"alg": "RS256", "kid": "sim"})),
        part(json!({
            "aud": ["api://AzureADTokenExchange"],
            "iss": "https://oidc.prod-aks.azure.com/sim/",
            "sub": "system:serviceaccount:moralsweep:moralsweep-worker",
            "iat": now, "nbf": now, "exp": now + valid_secs,
            "jti": format!("{:x}", rand_u64()),
        })),
        URL_SAFE_NO_PAD.encode(format!("sig{}", rand_u64())),
    )
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// Writes `dir/s.toml`: one Azure model `az` deploying the replayed model,
/// `personas` x 30 x `reps`, with `model_extra` lines.
fn write_spec(dir: &Path, personas_file: &Path, personas: usize, reps: u32, model_extra: &str) {
    write_spec_of(dir, personas_file, personas, reps, KEY, model_extra)
}

/// [`write_spec`] of the deployment `deployment`.
fn write_spec_of(
    dir: &Path,
    personas_file: &Path,
    personas: usize,
    reps: u32,
    deployment: &str,
    model_extra: &str,
) {
    let spec = format!(
        "name = \"azure\"\npersonas = \"{}\"\npersona_count = {personas}\nrepetitions = {reps}\n\
         temperature = 0.1\nmodes = [\"persona\"]\noutput = \"out\"\nseed = 7\n\n\
         [[model]]\nkey = \"az\"\nprovider = \"azure-openai\"\nmodel = \"{deployment}\"\n\
         catalog = \"openai/gpt-4o\"\nrpm = 6000000\ntimeout_secs = 10\n{model_extra}\n",
        personas_file.display()
    );
    std::fs::write(dir.join("s.toml"), spec).unwrap();
}

/// `moralsweep run s.toml` with the Azure variables `env` (and no others),
/// stopped with a failure after `limit`.
fn run(dir: &Path, env: &[(&str, String)], limit: Duration) -> (Output, Duration) {
    let mut cmd = Command::new(bin());
    cmd.args([
        "run",
        "s.toml",
        "--workers",
        "4",
        "--concurrency",
        "64",
        "--quiet",
    ])
    .current_dir(dir)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for v in AZURE_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t0 = Instant::now();
    let mut child = cmd.spawn().unwrap();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the run did not end within {limit:?}: the sweep stalled\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child.wait_with_output().unwrap(), t0.elapsed())
}

/// The simulator's Azure counters: `tokens_issued`, `requests`.
fn azure_stat(sim: &SimProc, what: &str) -> u64 {
    let r = request(sim.addr(), "GET", "/_sim/azure", &[], "");
    serde_json::from_str::<Value>(&r.body).unwrap()[what]
        .as_u64()
        .unwrap()
}

fn tokens_issued(sim: &SimProc) -> u64 {
    azure_stat(sim, "tokens_issued")
}

/// No secret in the run's output or any file of its folder; no bearer
/// token the simulator issued (they all start `simaz.`) either.
fn assert_no_secrets(dir: &Path, out: &Output, secrets: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for s in secrets.iter().copied().chain(["simaz."]) {
        assert!(
            !stderr.contains(s) && !stdout.contains(s),
            "{s:?} was logged"
        );
        let leaks = files_containing(dir, s);
        assert!(leaks.is_empty(), "{s:?} was written to {leaks:?}");
    }
}

fn deal_sim(reference: &Path, extra: &[&str], env: &[(&str, &str)]) -> SimProc {
    let replay = reference.join("sampling/insecure-code");
    let personas = reference.join("personas.json");
    let mut args = vec![
        "--replay",
        replay.to_str().unwrap(),
        "--personas",
        personas.to_str().unwrap(),
        "--replay-mode",
        "deal",
    ];
    args.extend_from_slice(extra);
    SimProc::start_with_env(&args, env)
}

#[test]
fn deal_replay_through_the_v1_api_with_a_key_reproduces_the_published_metrics() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let sim = deal_sim(
        &reference,
        &["--api-key-env", KEY_VAR],
        &[(KEY_VAR, API_KEY)],
    );
    write_spec(
        tmp.path(),
        &reference.join("personas.json"),
        100,
        10,
        &format!(
            "base_url = \"{}/openai/v1/\"\napi_key_env = \"{KEY_VAR}\"",
            sim.url
        ),
    );
    let (out, _) = run(
        tmp.path(),
        &[(KEY_VAR, API_KEY.into())],
        Duration::from_secs(600),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows_of(&tmp.path().join("out"), "az", "temp01");
    assert_every_slot_once(&rows, 100, 10);
    assert!(rows.iter().all(|r| r.failures == 0 && r.rating >= 0));
    assert_reproduces(&reference, &rows);
    let k = &sim.stats()["keys"][KEY];
    assert_eq!(k["replayed"], 30_000, "{k}");
    // Ten samples per request (`n`, gpt-4o's catalog entry): 3,000 requests.
    assert_eq!(k["requests"], 3_000, "{k}");
    assert_no_secrets(tmp.path(), &out, &[API_KEY]);
}

#[test]
fn workload_identity_with_20s_tokens_a_rotating_token_file_and_throttling_loses_nothing() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let sim = deal_sim(
        &reference,
        &[
            "--azure-tenant",
            TENANT,
            "--azure-client-id",
            CLIENT,
            "--azure-token-lifetime-secs",
            "20",
            "--fault-rate",
            "0.1",
            "--faults",
            "429",
            // Long enough a sweep for several tokens to end in it.
            "--latency-ms",
            "250",
            "--seed",
            "3",
        ],
        &[],
    );
    // Where the kubelet would project it: outside the sweep's folder, whose
    // files must hold no secret.
    let projected = tempfile::tempdir().unwrap();
    let token_file = projected.path().join("azure-identity-token");
    std::fs::write(&token_file, service_account_jwt(15)).unwrap();
    // The kubelet's rotation: a new token every 5 s, each valid for 15 s.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rotator = {
        let (stop, file) = (stop.clone(), token_file.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(5));
                let jwt = service_account_jwt(15);
                let tmp = file.with_extension("new");
                std::fs::write(&tmp, &jwt).unwrap();
                std::fs::rename(&tmp, &file).unwrap();
                seen.push(jwt);
            }
            seen
        })
    };
    write_spec(
        tmp.path(),
        &reference.join("personas.json"),
        100,
        10,
        &format!("base_url = \"{}\"\napi_version = \"2024-10-21\"", sim.url),
    );
    let env = [
        ("AZURE_TENANT_ID", TENANT.to_string()),
        ("AZURE_CLIENT_ID", CLIENT.to_string()),
        (
            "AZURE_FEDERATED_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("AZURE_AUTHORITY_HOST", sim.url.clone()),
    ];
    let (out, took) = run(tmp.path(), &env, Duration::from_secs(900));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let jwts = rotator.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows_of(&tmp.path().join("out"), "az", "temp01");
    assert_every_slot_once(&rows, 100, 10);
    assert!(
        rows.iter().all(|r| r.rating >= 0),
        "a slot ended without a rating"
    );
    assert_reproduces(&reference, &rows);
    let k = &sim.stats()["keys"][KEY];
    assert_eq!(k["replayed"], 30_000, "{k}");
    let throttled = k["faults"]["429"].as_u64().unwrap_or(0);
    // 10% of requests throttled (one request carries the ten samples of a
    // persona and question): at least 5% of them, allowing for chance.
    let requests = k["requests"].as_u64().unwrap_or(0);
    assert!(throttled * 20 >= requests, "too few 429s: {k}");
    let issued = tokens_issued(&sim);
    eprintln!(
        "workload identity: {took:?}, {issued} tokens, {throttled} throttled of {} requests",
        k["requests"]
    );
    // Refreshed as the tokens aged (one per half-life), not once per request.
    assert!(
        took > Duration::from_secs(25),
        "too short a sweep to test refresh: {took:?}"
    );
    assert!(issued >= 2, "no refresh in {took:?}");
    assert!(
        issued <= took.as_secs() / 10 + 3,
        "{issued} tokens in {took:?}"
    );
    let mut secrets: Vec<&str> = jwts.iter().map(String::as_str).collect();
    let first = std::fs::read_to_string(&token_file).unwrap();
    secrets.push(&first);
    assert_no_secrets(tmp.path(), &out, &secrets);
}

#[test]
fn a_client_secret_and_a_managed_identity_authenticate() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one = serial();
    let sim = deal_sim(
        &reference,
        &[
            "--generate-unknown",
            "--azure-tenant",
            TENANT,
            "--azure-client-secret-env",
            SECRET_VAR,
            "--azure-token-lifetime-secs",
            "2",
            "--latency-ms",
            "50",
        ],
        &[(SECRET_VAR, SECRET)],
    );
    let personas = reference.join("personas.json");
    for (name, env) in [
        (
            "client secret",
            vec![
                ("AZURE_TENANT_ID", TENANT.to_string()),
                ("AZURE_CLIENT_ID", CLIENT.to_string()),
                ("AZURE_CLIENT_SECRET", SECRET.to_string()),
                ("AZURE_AUTHORITY_HOST", sim.url.clone()),
            ],
        ),
        (
            "managed identity",
            vec![("AZURE_POD_IDENTITY_AUTHORITY_HOST", sim.url.clone())],
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        write_spec(
            tmp.path(),
            &personas,
            10,
            2,
            &format!("base_url = \"{}/openai/v1\"", sim.url),
        );
        let before = tokens_issued(&sim);
        let (out, took) = run(tmp.path(), &env, Duration::from_secs(300));
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows = rows_of(&tmp.path().join("out"), "az", "temp01");
        assert_every_slot_once(&rows, 10, 2);
        let issued = tokens_issued(&sim) - before;
        eprintln!("{name}: {issued} tokens in {took:?}");
        assert!(issued >= 1, "{name}: no token");
        assert_no_secrets(tmp.path(), &out, &[SECRET]);
    }
}

/// A failing model (2 personas x 30 items, 60 slots): the run ends with it
/// stopped, its message holding every needle, after at most `max_requests`
/// chat requests (the requests in flight when the first answer came back;
/// nothing retried).
/// The slots of a failing model's sweep.
const SLOTS: u64 = 60;

fn assert_stops(
    sim: &SimProc,
    deployment: &str,
    model_extra: &str,
    env: &[(&str, String)],
    needles: &[&str],
    max_requests: u64,
) {
    let Some(reference) = reference_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    write_spec_of(
        tmp.path(),
        &reference.join("personas.json"),
        2,
        1,
        deployment,
        model_extra,
    );
    let before = azure_stat(sim, "requests");
    let (out, _) = run(tmp.path(), env, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("model az stopped"), "{stderr}");
    for n in needles.iter().chain(&["\"az\"", "Azure"]) {
        assert!(stderr.contains(n), "{n:?} missing from: {stderr}");
    }
    let after = azure_stat(sim, "requests");
    assert!(
        after - before <= max_requests,
        "{} requests: retried",
        after - before
    );
    let secrets: Vec<&str> = env
        .iter()
        .filter(|(k, _)| k.contains("SECRET") || k.contains("KEY"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_no_secrets(tmp.path(), &out, &secrets);
}

#[test]
fn wrong_credentials_a_missing_role_and_unknown_deployments_stop_the_model_with_what_to_fix() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one = serial();
    let sim = deal_sim(
        &reference,
        &[
            "--api-key-env",
            KEY_VAR,
            "--azure-tenant",
            TENANT,
            "--azure-client-secret-env",
            SECRET_VAR,
            "--azure-no-role",
            "c0ffee00-0000-4000-8000-000000000001",
        ],
        &[(KEY_VAR, API_KEY), (SECRET_VAR, SECRET)],
    );
    let v1 = format!("base_url = \"{}/openai/v1\"", sim.url);
    let key = format!("{v1}\napi_key_env = \"{KEY_VAR}\"");
    let entra = |client: &str, secret: &str| {
        vec![
            ("AZURE_TENANT_ID", TENANT.to_string()),
            ("AZURE_CLIENT_ID", client.to_string()),
            ("AZURE_CLIENT_SECRET", secret.to_string()),
            ("AZURE_AUTHORITY_HOST", sim.url.clone()),
        ]
    };
    // A wrong key.
    assert_stops(
        &sim,
        KEY,
        &key,
        &[(KEY_VAR, "az-key-wrong-000000000000".into())],
        &[
            "401",
            "API key from environment variable",
            "Keys and Endpoint",
        ],
        SLOTS,
    );
    // A wrong client secret: no request reaches the deployment.
    assert_stops(
        &sim,
        KEY,
        &v1,
        &entra(CLIENT, "az-secret-wrong-0000000000"),
        &["client secret", "AZURE_CLIENT_SECRET", "AADSTS7000215"],
        0,
    );
    // An expired federated token.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("token");
    std::fs::write(&file, service_account_jwt(-60)).unwrap();
    assert_stops(
        &sim,
        KEY,
        &v1,
        &[
            ("AZURE_TENANT_ID", TENANT.to_string()),
            ("AZURE_CLIENT_ID", CLIENT.to_string()),
            ("AZURE_FEDERATED_TOKEN_FILE", file.display().to_string()),
            ("AZURE_AUTHORITY_HOST", sim.url.clone()),
        ],
        &["expired", "AZURE_FEDERATED_TOKEN_FILE", "AADSTS700024"],
        0,
    );
    // An identity without the role.
    assert_stops(
        &sim,
        KEY,
        &v1,
        &entra("c0ffee00-0000-4000-8000-000000000001", SECRET),
        &["403", "Cognitive Services OpenAI User"],
        SLOTS,
    );
    // A deployment the resource lacks, on both routes.
    assert_stops(
        &sim,
        "gpt-4o-nowhere",
        &key,
        &[(KEY_VAR, API_KEY.into())],
        &["DeploymentNotFound", "no deployment \"gpt-4o-nowhere\""],
        SLOTS,
    );
    assert_stops(
        &sim,
        KEY,
        &format!(
            "base_url = \"{}\"\napi_version = \"2099-01-01\"\napi_key_env = \"{KEY_VAR}\"",
            sim.url
        ),
        &[(KEY_VAR, API_KEY.into())],
        &["api-version", "api_version"],
        SLOTS,
    );
}

#[test]
fn the_official_openai_sdk_drives_azure_on_both_routes_with_keys_and_entra_tokens() {
    let Some(reference) = reference_dir() else {
        return;
    };
    if !python_with("openai") {
        return;
    }
    let sim = deal_sim(
        &reference,
        &[
            "--api-key-env",
            KEY_VAR,
            "--azure-tenant",
            TENANT,
            "--azure-client-id",
            CLIENT,
            "--azure-client-secret-env",
            SECRET_VAR,
        ],
        &[(KEY_VAR, API_KEY), (SECRET_VAR, SECRET)],
    );
    let out = Command::new("python3")
        .arg(python_script("azure_sdk_check.py"))
        .args([&sim.url, API_KEY, TENANT, CLIENT, SECRET, KEY])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
}

/// The bodies the Azure adapter sends, for every request the rating
/// protocol makes: they must be the `openai` SDK's
/// `CompletionCreateParams` (what its `AzureOpenAI` client sends), and the
/// simulator's Azure routes answer them all.
#[test]
fn request_bodies_are_the_openai_sdk_types_and_the_simulator_answers_them() {
    use moralsweep_common::prompt::{persona_prompt, self_prompt};
    use moralsweep_common::{ModelSpec, ITEMS};
    use moralsweep_worker::providers::azure::AzureOpenAi;
    use moralsweep_worker::providers::CompletionRequest;

    if !python_with("openai, pydantic") {
        return;
    }
    let sim = SimProc::start_with_env(&["--api-key-env", KEY_VAR], &[(KEY_VAR, API_KEY)]);
    std::env::set_var(KEY_VAR, API_KEY);
    let tmp = tempfile::tempdir().unwrap();
    let mut manifest = Vec::new();
    let req = |prompt: String, max_tokens, top| CompletionRequest {
        prompt,
        max_tokens,
        temperature: Some(0.1),
        seed: Some(12345),
        top_logprobs: top,
    };
    let requests = [
        (
            "persona",
            req(persona_prompt("a retired nurse", &ITEMS[3]), 1, None),
            1,
        ),
        ("self", req(self_prompt(&ITEMS[5]), 1, None), 1),
        (
            "fallback",
            req(persona_prompt("a retired nurse", &ITEMS[3]), 64, None),
            1,
        ),
        (
            "logprob",
            req(persona_prompt("a poet", &ITEMS[7]), 1, Some(20)),
            1,
        ),
        (
            "multi-sample",
            req(persona_prompt("a poet", &ITEMS[7]), 1, None),
            10,
        ),
    ];
    for (route, fields) in [
        ("v1", json!({"base_url": format!("{}/openai/v1", sim.url)})),
        (
            "deployments",
            json!({"base_url": sim.url, "api_version": "2024-10-21"}),
        ),
        (
            "reasoning",
            json!({"base_url": format!("{}/openai/v1", sim.url), "model": "o3-mini-prod",
                   "reasoning": true, "reasoning_effort": "low"}),
        ),
    ] {
        let mut v = json!({"key": "az", "provider": "azure-openai", "model": "gpt-4o-prod",
                           "api_key_env": KEY_VAR, "catalog": "openai/gpt-4o"});
        for (k, x) in fields.as_object().unwrap() {
            v[k] = x.clone();
        }
        let spec: ModelSpec = serde_json::from_value(v).unwrap();
        let model = AzureOpenAi::new(&spec, spec.api_version.as_deref()).unwrap();
        for (name, r, n) in &requests {
            let body = model.openai().body_n(r, *n).unwrap();
            let file = tmp.path().join(format!("{route}-{name}.json"));
            std::fs::write(&file, body.to_string()).unwrap();
            manifest.push(json!({"name": format!("azure {route} {name}"),
                "type": "openai.CompletionCreateParams", "file": file, "expect": "valid"}));
            // The simulator answers it on the route the model uses.
            let url = moralsweep_worker::providers::batch::openai::Host::url(
                &model,
                "/chat/completions",
                &[],
            );
            let path = url.trim_start_matches(&sim.url);
            let reply = request(
                sim.addr(),
                "POST",
                path,
                &[("api-key", API_KEY)],
                &body.to_string(),
            );
            // Without a replay the simulator answers every deployment.
            assert_eq!(reply.status, 200, "{route} {name}: {}", reply.body);
        }
    }
    // A negative control: a field the SDK lacks is refused.
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        json!({"model": "d", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1,
               "deployment": "d"})
        .to_string(),
    )
    .unwrap();
    manifest.push(
        json!({"name": "azure negative control", "type": "openai.CompletionCreateParams",
                         "file": bad, "expect": "invalid"}),
    );
    let m = tmp.path().join("manifest.json");
    std::fs::write(&m, serde_json::to_string(&manifest).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(python_script("validate_sdk_requests.py"))
        .arg(&m)
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

/// `batch = true` through Azure's batch (files and batches under the
/// deployments route, with an Entra ID token): the 100 x 30 x 10 deal
/// replay from one provider batch of 3,000 requests (`n` = 10), exact, no
/// interactive request.
#[test]
fn batch_through_a_global_batch_deployment_reproduces_the_published_metrics() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let sim = deal_sim(
        &reference,
        &[
            "--batch-delay-ms",
            "500",
            "--azure-tenant",
            TENANT,
            "--azure-client-secret-env",
            SECRET_VAR,
        ],
        &[(SECRET_VAR, SECRET)],
    );
    write_spec(
        tmp.path(),
        &reference.join("personas.json"),
        100,
        10,
        &format!(
            "base_url = \"{}\"\napi_version = \"2025-04-01-preview\"\nbatch = true",
            sim.url
        ),
    );
    let env = [
        ("AZURE_TENANT_ID", TENANT.to_string()),
        ("AZURE_CLIENT_ID", CLIENT.to_string()),
        ("AZURE_CLIENT_SECRET", SECRET.to_string()),
        ("AZURE_AUTHORITY_HOST", sim.url.clone()),
    ];
    let (out, _) = run(tmp.path(), &env, Duration::from_secs(600));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows_of(&tmp.path().join("out"), "az", "temp01");
    assert_every_slot_once(&rows, 100, 10);
    assert!(rows.iter().all(|r| r.failures == 0 && r.rating >= 0));
    assert_reproduces(&reference, &rows);
    let b = &sim.stats()["batches"];
    assert_eq!(b["created"], 1, "{b}");
    assert_eq!(b["lines"], 3_000, "{b}");
    assert_eq!(
        azure_stat(&sim, "requests"),
        0,
        "interactive requests were sent"
    );
    assert_no_secrets(tmp.path(), &out, &[SECRET]);
}
