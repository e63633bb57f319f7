//! Amazon Bedrock (provider `bedrock`), end to end:
//!
//! - every request body the worker builds validates against the Converse
//!   (and CountTokens) input shape of botocore's `bedrock-runtime` service
//!   model, with negative controls (`tests/python/bedrock_validate.py`);
//! - boto3's `bedrock-runtime` client (`converse`, `count_tokens`, the
//!   errors) and its `sts` client (`assume_role_with_web_identity`) complete
//!   against the simulator (`tests/python/bedrock_sdk_check.py`);
//! - through the binary, a 100 x 30 x 10 deal replay signed with static
//!   keys reproduces the published metrics to 1e-9 with every slot once;
//!   with web identity (STS through `AWS_ENDPOINT_URL_STS`) whose
//!   credentials live 20 s, and 10% throttling, nothing is lost, the
//!   credentials are refreshed ahead of expiry (the simulator never sees an
//!   expired one) and the sweep goes on; container credentials (EKS Pod
//!   Identity) too;
//! - a wrong secret, expired static credentials and a missing permission
//!   each stop the model with a message naming the model, Amazon Bedrock
//!   and what to fix, after a handful of requests; no secret reaches the
//!   output folder or the run's output.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::exact::{assert_every_slot_once, assert_reproduces, rows_in, KEY};
use crate::common::simproc::{python_script, python_with, request, request_bytes, SimProc};
use crate::common::{bin, files_containing};
use moralsweep_common::prompt::{persona_prompt, self_prompt};
use moralsweep_common::{ModelSpec, ITEMS};
use moralsweep_testsupport::reference::reference_dir;
use moralsweep_worker::providers::bedrock::Bedrock;
use moralsweep_worker::providers::CompletionRequest;
use serde_json::{json, Value};

const KEY_ID: &str = "AKIASIMULATORTEST01";
const SECRET: &str = "sim/Secret+Access/Key0123456789abcdefghij";

/// The sweeps of this file run one at a time (see `sim_exact.rs`).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn spec(fields: Value) -> ModelSpec {
    let mut v = json!({"key": "m", "provider": "bedrock", "region": "us-east-1"});
    for (k, x) in fields.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

#[test]
fn request_bodies_match_botocores_converse_shape() {
    if !python_with("botocore") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let persona = persona_prompt("a retired nurse", &ITEMS[3]);
    let requests = |t: Option<f64>| {
        vec![
            ("persona", persona.clone(), 1, t),
            ("self", self_prompt(&ITEMS[17]), 1, t),
            ("fallback", persona.clone(), 64, t),
        ]
    };
    let mut manifest = Vec::new();
    let mut add = |name: String, op: &str, model: &str, body: &Value, expect: &str| {
        let file = tmp.path().join(format!("{}.json", manifest.len()));
        std::fs::write(&file, serde_json::to_vec(body).unwrap()).unwrap();
        manifest.push(
            json!({"name": name, "operation": op, "model": model, "file": file, "expect": expect}),
        );
    };
    let models = [
        (
            "claude",
            spec(json!({"model": "anthropic.claude-3-5-haiku-20241022-v1:0"})),
        ),
        (
            "profile",
            spec(
                json!({"model": "us.meta.llama3-2-3b-instruct-v1:0", "temperature": "provider-default"}),
            ),
        ),
        (
            "extra",
            spec(
                json!({"model": "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-lite-v1:0",
                "extra": {"additionalModelRequestFields": {"top_k": 1}, "inferenceConfig": {"topP": 0.9}}}),
            ),
        ),
    ];
    for (label, s) in &models {
        let b = Bedrock::new(s).unwrap();
        for (name, prompt, max_tokens, t) in requests(s.sampling_temperature(0.1)) {
            let req = CompletionRequest {
                prompt,
                max_tokens,
                temperature: t,
                seed: Some(12345),
                top_logprobs: None,
            };
            add(
                format!("{label}-{name}"),
                "Converse",
                &s.model,
                &b.body(&req),
                "valid",
            );
        }
        add(
            format!("{label}-count"),
            "CountTokens",
            &s.model,
            &b.count_body(&persona),
            "valid",
        );
    }
    // Negative controls: fields Converse does not define, a wrong type.
    let b = Bedrock::new(&models[0].1).unwrap();
    let req = CompletionRequest {
        prompt: persona.clone(),
        max_tokens: 1,
        temperature: Some(0.1),
        seed: None,
        top_logprobs: None,
    };
    let mut seeded = b.body(&req);
    seeded["seed"] = json!(7);
    add("control-seed".into(), "Converse", "m", &seeded, "invalid");
    let mut top_k = b.body(&req);
    top_k["inferenceConfig"]["topK"] = json!(1);
    add("control-topk".into(), "Converse", "m", &top_k, "invalid");
    let mut string_tokens = b.body(&req);
    string_tokens["inferenceConfig"]["maxTokens"] = json!("1");
    add(
        "control-type".into(),
        "Converse",
        "m",
        &string_tokens,
        "invalid",
    );
    let n = manifest.len();
    let path = tmp.path().join("manifest.json");
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(python_script("bedrock_validate.py"))
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("checked {n} bodies, 0 problems")),
        "{stdout}"
    );
}

/// A simulator replaying the reference model in `mode` that accepts the
/// test's key pair, with `extra` flags.
fn start_sim(reference: &Path, mode: &str, extra: &[&str]) -> SimProc {
    let replay = reference.join("sampling/insecure-code");
    let personas = reference.join("personas.json");
    let key = format!("{KEY_ID}:{SECRET}");
    let mut args = vec![
        "--replay",
        replay.to_str().unwrap(),
        "--personas",
        personas.to_str().unwrap(),
        "--replay-mode",
        mode,
        "--aws-key",
        &key,
    ];
    args.extend_from_slice(extra);
    SimProc::start(&args)
}

#[test]
fn boto3_drives_the_simulators_bedrock_and_sts_routes() {
    let Some(reference) = reference_dir() else {
        return;
    };
    if !python_with("boto3") {
        return;
    }
    let sim = start_sim(&reference, "sample", &["--aws-deny", "denied.model-v1:0"]);
    let out = Command::new("python3")
        .arg(python_script("bedrock_sdk_check.py"))
        .args([&sim.url, KEY_ID, SECRET, KEY, "denied.model-v1:0"])
        .env("HOME", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
    let aws = aws_report(&sim);
    assert!(aws["issued"].as_u64().unwrap() >= 1, "{aws}");
}

fn aws_report(sim: &SimProc) -> Value {
    let r = request(sim.addr(), "GET", "/_sim/aws", &[], "");
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::from_str(&r.body).unwrap()
}

/// Writes `dir/s.toml`: a persona sweep of [`KEY`] through Bedrock at the
/// simulator.
fn write_spec(
    dir: &Path,
    reference: &Path,
    sim: &SimProc,
    personas: usize,
    reps: u32,
    model_extra: &str,
) {
    let spec = format!(
        "name = \"bedrock\"\npersonas = \"{}\"\npersona_count = {personas}\nrepetitions = {reps}\n\
         temperature = 0.1\nmodes = [\"persona\"]\noutput = \"out\"\nseed = 7\n\n\
         [[model]]\nkey = \"{KEY}\"\nprovider = \"bedrock\"\nmodel = \"{KEY}\"\nregion = \"us-east-1\"\n\
         base_url = \"{}\"\ntimeout_secs = 10\n{model_extra}\n",
        reference.join("personas.json").display(),
        sim.url,
    );
    std::fs::write(dir.join("s.toml"), spec).unwrap();
}

/// `moralsweep run s.toml` in `dir` with only `env` of the AWS settings
/// (a fresh HOME: no profile files; instance metadata off).
fn run_with(dir: &Path, env: &[(&str, String)]) -> Output {
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
    .current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    cmd.env("HOME", &home)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn static_keys() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", KEY_ID.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
    ]
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "moralsweep run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// No secret of `secrets` in the output folder or the run's output.
fn assert_no_secret(dir: &Path, out: &Output, secrets: &[&str]) {
    for s in secrets {
        assert!(
            files_containing(&dir.join("out"), s).is_empty(),
            "a secret in the output folder"
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains(s),
            "a secret in stderr"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(s),
            "a secret in stdout"
        );
    }
}

#[test]
fn a_deal_replay_through_bedrock_reproduces_the_published_metrics() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let sim = start_sim(&reference, "deal", &[]);
    write_spec(tmp.path(), &reference, &sim, 100, 10, "rpm = 6000000");
    let out = run_with(tmp.path(), &static_keys());
    assert_ok(&out);
    let rows = rows_in(&tmp.path().join("out"), "temp01");
    assert_every_slot_once(&rows, 100, 10);
    assert!(rows.iter().all(|r| r.failures == 0 && r.rating >= 0));
    assert_reproduces(&reference, &rows);
    let stats = &sim.stats()["keys"][KEY];
    assert_eq!(stats["replayed"], 30_000, "{stats}");
    assert_eq!(stats["requests"], 30_000, "{stats}");
    assert_eq!(aws_report(&sim)["bad_signatures"], 0);
    assert_no_secret(tmp.path(), &out, &[SECRET]);
}

#[test]
fn web_identity_credentials_living_20_s_and_10_percent_throttling_lose_nothing() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let sim = start_sim(
        &reference,
        "deal",
        &[
            "--aws-token-lifetime-secs",
            "20",
            "--fault-rate",
            "0.1",
            "--faults",
            "429",
            "--seed",
            "3",
        ],
    );
    // 45,000 requests a minute: the sweep lasts about 40 s, two lifetimes.
    write_spec(tmp.path(), &reference, &sim, 100, 10, "rpm = 45000");
    let token = tmp.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.projected.sa-token").unwrap();
    let t0 = std::time::Instant::now();
    let out = run_with(
        tmp.path(),
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
            (
                "AWS_ROLE_ARN",
                "arn:aws:iam::123456789012:role/moralsweep-worker".into(),
            ),
            ("AWS_ROLE_SESSION_NAME", "moralsweep".into()),
            ("AWS_ENDPOINT_URL_STS", sim.url.clone()),
        ],
    );
    assert_ok(&out);
    let took = t0.elapsed();
    let rows = rows_in(&tmp.path().join("out"), "temp01");
    assert_every_slot_once(&rows, 100, 10);
    assert_reproduces(&reference, &rows);
    let stats = &sim.stats()["keys"][KEY];
    assert_eq!(stats["replayed"], 30_000, "{stats}");
    assert!(stats["faults"]["429"].as_u64().unwrap() > 1000, "{stats}");
    let aws = aws_report(&sim);
    eprintln!("web identity sweep: {took:?}, {aws}");
    // Fetched again ahead of each expiry: at least one refresh per 20 s of
    // sweep, and never a request signed with expired credentials.
    let lifetimes = took.as_secs() / 20;
    assert!(
        aws["issued"].as_u64().unwrap() > lifetimes.max(1),
        "{aws} in {took:?}"
    );
    assert_eq!(aws["expired_refusals"], 0, "{aws}");
    assert_eq!(aws["bad_signatures"], 0, "{aws}");
}

#[test]
fn container_credentials_sign_a_sweep() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one = serial();
    let tmp = tempfile::tempdir().unwrap();
    let sim = start_sim(&reference, "sample", &[]);
    write_spec(tmp.path(), &reference, &sim, 10, 2, "");
    let token = tmp.path().join("eks-pod-identity-token");
    std::fs::write(&token, "pod-identity-token").unwrap();
    let out = run_with(
        tmp.path(),
        &[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("{}/_aws/container-credentials", sim.url),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                token.display().to_string(),
            ),
        ],
    );
    assert_ok(&out);
    let rows = rows_in(&tmp.path().join("out"), "temp01");
    assert_eq!(rows.len(), 10 * 30 * 2);
    let aws = aws_report(&sim);
    assert!(aws["issued"].as_u64().unwrap() >= 1, "{aws}");
    assert_eq!(aws["bad_signatures"], 0, "{aws}");
}

/// A small sweep that must stop: its stderr, after at most a handful of
/// requests reached the simulator.
fn stopped(reference: &Path, sim_extra: &[&str], env: &[(&str, String)]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let sim = start_sim(reference, "sample", sim_extra);
    write_spec(tmp.path(), reference, &sim, 5, 1, "");
    let out = run_with(tmp.path(), env);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "the sweep should have stopped:\n{err}"
    );
    let report = sim.stats();
    let requests: u64 = report["keys"]
        .as_object()
        .map(|k| k.values().filter_map(|v| v["requests"].as_u64()).sum())
        .unwrap_or(0);
    let refused = aws_report(&sim)["bad_signatures"].as_u64().unwrap();
    // Each worker stops the model at its first refusal: nothing retried.
    assert!(
        requests + refused <= 4 * 64,
        "{requests} requests, {refused} refused\n{err}"
    );
    assert!(err.contains(KEY), "{err}");
    assert!(err.contains("Amazon Bedrock"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    err
}

#[test]
fn a_wrong_secret_expired_credentials_and_a_missing_permission_stop_the_model() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let _one = serial();
    let wrong = vec![
        ("AWS_ACCESS_KEY_ID", KEY_ID.to_string()),
        ("AWS_SECRET_ACCESS_KEY", format!("{SECRET}x")),
    ];
    let err = stopped(&reference, &[], &wrong);
    assert!(
        err.contains("InvalidSignatureException") && err.contains("secret access key"),
        "{err}"
    );

    // Temporary credentials the simulator issued, expired by now, given as
    // static environment keys: they cannot be refreshed.
    let sim = SimProc::start(&["--aws-token-lifetime-secs", "1"]);
    let r = request_bytes(
        sim.addr(),
        "POST",
        "/",
        &[],
        Some("application/x-www-form-urlencoded"),
        b"Action=AssumeRoleWithWebIdentity&Version=2011-06-15&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fr&RoleSessionName=s&WebIdentityToken=t",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let field = |name: &str| {
        let start = r.body.find(&format!("<{name}>")).unwrap() + name.len() + 2;
        let end = r.body[start..].find('<').unwrap() + start;
        r.body[start..end].to_string()
    };
    let (id, secret, token) = (
        field("AccessKeyId"),
        field("SecretAccessKey"),
        field("SessionToken"),
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The same simulator must judge them: point the sweep at it.
    let err = stopped_at(
        &reference,
        &sim,
        &[
            ("AWS_ACCESS_KEY_ID", id),
            ("AWS_SECRET_ACCESS_KEY", secret.clone()),
            ("AWS_SESSION_TOKEN", token.clone()),
        ],
    );
    assert!(
        err.contains("ExpiredTokenException") && err.contains("get new credentials"),
        "{err}"
    );
    assert!(!err.contains(&secret) && !err.contains(&token), "{err}");

    let err = stopped(&reference, &["--aws-deny", KEY], &static_keys());
    assert!(
        err.contains("AccessDeniedException") && err.contains("bedrock:InvokeModel"),
        "{err}"
    );
}

/// [`stopped`] against a running simulator without replay data (its
/// generator answers).
fn stopped_at(reference: &Path, sim: &SimProc, env: &[(&str, String)]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    write_spec(tmp.path(), reference, sim, 5, 1, "");
    let out = run_with(tmp.path(), env);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "the sweep should have stopped:\n{err}"
    );
    assert!(err.contains(KEY) && err.contains("Amazon Bedrock"), "{err}");
    err
}
