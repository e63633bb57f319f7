//! The official `openai` and `anthropic` Python SDKs parse the simulator's
//! answers and errors: `moralsweep sim` runs on a free port and
//! `tests/python/sdk_check.py` drives it through both SDKs (chat with seed and
//! logprobs, the Responses API with reasoning and logprobs, Messages, and
//! 400/401/404/429/500/503(529)/dropped/timeout/empty/non-digit answers).

mod common;
use common::simproc;

use std::process::Command;

use moralsweep_testsupport::reference::reference_dir;
use simproc::{python_script, python_with, SimProc};

#[test]
fn official_sdks_parse_the_simulator() {
    let Some(reference) = reference_dir() else {
        return;
    };
    if !python_with("openai, anthropic") {
        return;
    }
    let sim = SimProc::start_with_env(
        &[
            "--replay",
            reference.join("sampling/insecure-code").to_str().unwrap(),
            "--personas",
            reference.join("personas.json").to_str().unwrap(),
            "--api-key-env",
            "MORALSWEEP_SIM_TEST_KEY",
            "--hang-ms",
            "3000",
        ],
        &[("MORALSWEEP_SIM_TEST_KEY", "sk-sim-test")],
    );
    let out = Command::new("python3")
        .arg(python_script("sdk_check.py"))
        .args([&sim.url, "sk-sim-test", "gpt-4o-misaligned"])
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

/// The three SDKs drive the simulator's batch APIs
/// (`tests/python/sdk_batch_check.py`): OpenAI `files.create`,
/// `batches.create/retrieve/list/cancel`, `files.content`; Anthropic
/// `messages.batches.create/retrieve/results/cancel/list`; Gemini
/// `batches.create/get/list` with inline requests and with a file
/// (`files.upload`, `files.download`). Partial failure, cancelling, per-line
/// validation and the 50,000-request limit included. Afterwards the
/// simulator reports every batch created exactly once.
#[test]
fn official_sdks_drive_the_batch_apis() {
    let Some(reference) = reference_dir() else {
        return;
    };
    if !python_with("openai, anthropic, google.genai") {
        return;
    }
    let replay = reference.join("sampling/insecure-code");
    let personas = reference.join("personas.json");
    let start = |extra: &[&str]| {
        let mut args = vec![
            "--replay",
            replay.to_str().unwrap(),
            "--personas",
            personas.to_str().unwrap(),
            "--api-key-env",
            "MORALSWEEP_SIM_TEST_KEY",
            "--generate-unknown",
        ];
        args.extend_from_slice(extra);
        SimProc::start_with_env(&args, &[("MORALSWEEP_SIM_TEST_KEY", "sk-sim-test")])
    };
    let plain = start(&["--replay-mode", "deal"]);
    let slow = start(&["--batch-delay-ms", "3600000"]);
    let failing = start(&["--batch-errored", "0.3", "--batch-expired", "0.2"]);
    let out = Command::new("python3")
        .arg(python_script("sdk_batch_check.py"))
        .args([
            &plain.url,
            &slow.url,
            &failing.url,
            "sk-sim-test",
            "gpt-4o-misaligned",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
    let stats = plain.stats();
    let b = &stats["batches"];
    // OpenAI: the good batch, the invalid one, the 50,001 lines; Anthropic:
    // the batch (the repeated custom id was refused); Gemini: inline and
    // from a file.
    assert_eq!(b["apis"]["openai"]["created"], 3, "{b}");
    // Lines a batch will answer: a batch that failed validation has only
    // its valid lines (one of the three), the one over the limit none.
    assert_eq!(b["apis"]["openai"]["lines"], 5 + 1, "{b}");
    assert_eq!(b["apis"]["anthropic"]["created"], 1, "{b}");
    assert_eq!(b["apis"]["gemini"]["created"], 2, "{b}");
    assert_eq!(b["resubmitted"], 0, "no batch was created twice: {b}");
    assert_eq!(slow.stats()["batches"]["apis"]["openai"]["cancelled"], 1);
}
