//! `moralsweep run` end to end: a sweep in one process completes with every
//! slot exactly once; killed with SIGKILL midway and run again, it resumes
//! and its files equal those of an undisturbed run; bad specs get clear
//! errors.

mod common;
use common::simproc;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MODELS: [&str; 2] = ["syn-base", "syn-insecure"];
const PERSONAS: usize = 20;
const REPS: u32 = 3;

#[test]
fn run_completes_then_survives_kill9_and_resumes_identically() {
    // Undisturbed.
    let a = tempfile::tempdir().unwrap();
    write_personas(a.path(), PERSONAS);
    std::fs::write(
        a.path().join("s.toml"),
        spec_text("e2e-run", &MODELS, PERSONAS, REPS, ""),
    )
    .unwrap();
    let out = run(&["run", "s.toml", "--workers", "3"], a.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("done"), "{stdout}");
    let want = data_without_time(&a.path().join("out"));
    assert_eq!(want.len(), 4, "{:?}", want.keys());
    assert_every_slot_once(&want["syn-base_temp01.csv"], PERSONAS, REPS as usize);
    assert_eq!(
        want["syn-base_temp01_self.csv"].len() - 1,
        30 * REPS as usize
    );
    // Metrics were written, the S/R table printed, and `analyze` reads the files.
    let metrics = a.path().join("out/metrics/persona_moral_metrics.csv");
    let table = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        table.contains("syn-base") && table.contains("syn-insecure"),
        "{table}"
    );
    assert!(
        stdout.contains("syn-insecure") && stdout.contains("se(R)"),
        "{stdout}"
    );
    assert!(a.path().join("out/metrics/variant_deltas.csv").exists());
    let out = run(
        &[
            "analyze",
            "out/data",
            "--out",
            "again",
            "--bootstrap",
            "50",
            "--rerun-bootstrap",
            "20",
        ],
        a.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(a.path().join("again/persona_moral_metrics.csv").exists());

    // Slowed down by a rate limit, killed with SIGKILL midway.
    let b = tempfile::tempdir().unwrap();
    write_personas(b.path(), PERSONAS);
    std::fs::write(
        b.path().join("s.toml"),
        spec_text("e2e-run", &MODELS, PERSONAS, REPS, "rpm = 3000"),
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["run", "s.toml", "--workers", "3", "--quiet"])
        .current_dir(b.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = b.path().join("out/.moralsweep/state.redb");
    let t0 = Instant::now();
    while !state.exists() && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !b.path().join("out/data/syn-base_temp01.csv").exists(),
        "killed too late"
    );

    // Run again without the limit: resumes, finishes, same answers.
    std::fs::write(
        b.path().join("s.toml"),
        spec_text("e2e-run", &MODELS, PERSONAS, REPS, ""),
    )
    .unwrap();
    let out = run(&["run", "s.toml", "--workers", "3"], b.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let resumed: u64 = stderr
        .split("resuming sweep e2e-run: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume line in {stderr}"));
    let total = (2 * (PERSONAS * 30 + 30) * REPS as usize) as u64;
    assert!(
        resumed > 0 && resumed < total,
        "resumed at {resumed} of {total}"
    );
    let got = data_without_time(&b.path().join("out"));
    assert_eq!(
        got, want,
        "files after kill -9 and rerun differ from the undisturbed run"
    );

    // A third run has nothing to do and changes nothing.
    let out = run(&["run", "s.toml"], b.path());
    assert!(out.status.success());
    assert_eq!(data_without_time(&b.path().join("out")), want);
}

#[test]
fn bad_specs_get_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    write_personas(d.path(), 5);
    let base = spec_text("bad", &["m"], 5, 2, "");
    let cases: Vec<(String, &[&str])> = vec![
        (
            base.replace("repetitions = 2", "repetitions = 0"),
            &["s.toml", "`repetitions`"],
        ),
        (
            base.replace("persona_count = 5", "persona_count = 9"),
            &["persona_count", "only 5"],
        ),
        (
            base.replace("personas.json", "missing.json"),
            &["missing.json"],
        ),
        (
            base.replace("provider = \"synthetic\"", "provider = \"opneai\""),
            &["model[0].provider", "openai"],
        ),
        (
            base.replace("seed = 11", "seed = 11\ncolour = 3"),
            &["colour"],
        ),
        (format!("{base}rpm = 0\n"), &["model[0].rpm"]),
        (
            format!("{base}api_key_env = \"MORALSWEEP_E2E_UNSET_KEY\"\n"),
            &["MORALSWEEP_E2E_UNSET_KEY"],
        ),
        (
            base.replace("seed = 11", "seed = 11\ntemperature = 3.0"),
            &["`temperature`", "[0, 2]"],
        ),
    ];
    for (text, needles) in cases {
        std::fs::write(d.path().join("s.toml"), &text).unwrap();
        let out = run(&["run", "s.toml"], d.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted:\n{text}");
        for n in needles {
            assert!(err.contains(n), "error {err:?} does not mention {n:?}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = run(&["run", "nope.toml"], d.path());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.toml"));
}

#[test]
fn a_model_with_a_bad_key_stops_with_a_clear_message_and_the_rest_goes_on() {
    const KEY_VAR: &str = "MORALSWEEP_E2E_RUN_KEY";
    const BAD_VAR: &str = "MORALSWEEP_E2E_RUN_BAD_KEY";
    const KEY: &str = "sk-run-good-123456";
    let sim = simproc::SimProc::start_with_env(&["--api-key-env", KEY_VAR], &[(KEY_VAR, KEY)]);
    let d = tempfile::tempdir().unwrap();
    write_personas(d.path(), 3);
    let mut text = spec_text_sim("fatal", &["good"], 3, 2, &sim.url, KEY_VAR, "");
    text.push_str(&format!(
        "\n[[model]]\nkey = \"bad\"\nprovider = \"openai\"\nmodel = \"bad\"\nbase_url = \"{}/v1\"\napi_key_env = \"{BAD_VAR}\"\n",
        sim.url
    ));
    std::fs::write(d.path().join("s.toml"), text).unwrap();
    let out = Command::new(bin())
        .args(["run", "s.toml", "--workers", "2"])
        .current_dir(d.path())
        .env(KEY_VAR, KEY)
        .env(BAD_VAR, "sk-wrong-key-000")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("models stopped before finishing: bad"),
        "no summary of the stopped model: {stderr}"
    );
    assert!(
        stderr.contains("model bad stopped") && stderr.contains("401"),
        "no clear message for the bad model: {stderr}"
    );
    assert!(d.path().join("out/data/good_temp01.csv").exists());
    assert!(!d.path().join("out/data/bad_temp01.csv").exists());
    let good = data_without_time(&d.path().join("out"));
    assert_every_slot_once(&good["good_temp01.csv"], 3, 2);
    for k in [KEY, "sk-wrong-key-000"] {
        let leaks = files_containing(d.path(), k);
        assert!(leaks.is_empty(), "an API key was written to {leaks:?}");
        assert!(!stderr.contains(k), "an API key was logged");
    }
}

#[test]
fn a_sweep_whose_every_model_stops_ends_with_an_error() {
    // It used to wait forever, retrying to write metrics from a data
    // directory no unit had created.
    const KEY_VAR: &str = "MORALSWEEP_E2E_LONE_KEY";
    let sim = simproc::SimProc::start_with_env(
        &["--api-key-env", KEY_VAR],
        &[(KEY_VAR, "sk-lone-right-1234")],
    );
    let d = tempfile::tempdir().unwrap();
    write_personas(d.path(), 2);
    let text = spec_text_sim("lone", &["solo"], 2, 1, &sim.url, KEY_VAR, "");
    std::fs::write(d.path().join("s.toml"), text).unwrap();
    let mut child = Command::new(bin())
        .args(["run", "s.toml", "--quiet"])
        .current_dir(d.path())
        .env(KEY_VAR, "sk-lone-wrong-0000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the run did not end within 60 s after its only model stopped");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("models stopped before finishing: solo") && stderr.contains("401"),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_stops_cleanly_and_a_rerun_finishes() {
    let d = tempfile::tempdir().unwrap();
    write_personas(d.path(), 5);
    std::fs::write(
        d.path().join("s.toml"),
        spec_text("ctrlc", &["m"], 5, 2, "rpm = 1200"),
    )
    .unwrap();
    let child = Command::new(bin())
        .args(["run", "s.toml", "--workers", "2", "--quiet"])
        .current_dir(d.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted") && stderr.contains("run the same command again"),
        "{stderr}"
    );
    std::fs::write(
        d.path().join("s.toml"),
        spec_text("ctrlc", &["m"], 5, 2, ""),
    )
    .unwrap();
    let out = run(&["run", "s.toml"], d.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = data_without_time(&d.path().join("out"));
    assert_every_slot_once(&files["m_temp01.csv"], 5, 2);
}

/// After its first minute (shortened here through the test-only
/// `MORALSWEEP_ETA_AFTER_SECS`), `run` prints the sweep's expected total
/// duration once, from the slots answered so far and the slots left, and
/// the progress lines go on after it.
#[test]
fn run_prints_its_expected_duration_once_after_the_first_minute() {
    let d = tempfile::tempdir().unwrap();
    write_personas(d.path(), 2);
    // 180 slots (90 cells) at 1500 requests a minute: 3.6 to 7.2 s.
    std::fs::write(
        d.path().join("s.toml"),
        spec_text("eta-run", &["syn-base"], 2, 2, "rpm = 1500"),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["run", "s.toml", "--no-report"])
        .current_dir(d.path())
        .env("MORALSWEEP_ETA_AFTER_SECS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("expected duration: about "))
        .collect();
    assert_eq!(lines.len(), 1, "one expected-duration line in:\n{stdout}");
    let line = lines[0];
    assert!(
        line.contains(" in total, ") && line.contains(" to go (") && line.contains(" left)"),
        "{line}"
    );
    // The answered and left counts add up to the sweep's 180 slots at most
    // (slots in flight are in neither).
    let num = |after: &str, before: &str| -> u64 {
        line.split(after)
            .nth(1)
            .unwrap()
            .split(before)
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let answered = num(" to go (", " slots");
    let left: u64 = line
        .rsplit(", ")
        .next()
        .and_then(|s| s.strip_suffix(" left)"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no count left in {line}"));
    assert!(answered > 0 && left > 0 && answered + left <= 180, "{line}");
    // Progress goes on after it: the last progress line shows the sweep done.
    let after: Vec<&str> = stdout
        .split(line)
        .nth(1)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("progress "))
        .collect();
    assert!(
        after
            .last()
            .is_some_and(|l| l.starts_with("progress 180/180")),
        "no progress after the expected duration:\n{stdout}"
    );
}
