//! The official `openai` and `anthropic` Python SDKs parse the simulator's
//! answers and errors: `moralsweep sim` runs on a free port and
//! `tests/python/sdk_check.py` drives it through both SDKs (chat with seed and
//! logprobs, the Responses API with reasoning and logprobs, Messages, and
//! 400/401/404/429/500/503(529)/dropped/timeout/empty/non-digit answers).

mod simproc;

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
