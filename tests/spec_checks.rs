//! Specs a careless or hostile user writes, through the real binary: `run`,
//! `run --dry-run` and `submit` refuse the same oversized sweep with the same
//! message naming the key (no slot total wrapped at 2^32); a `base_url` that
//! is not an http(s) URL, and a sweep name that would make a hidden or
//! relative folder, are refused before any output folder exists; and no
//! command prints an error's cause twice.

mod common;

use std::path::Path;

use common::*;

/// The binary under test (`MORALSWEEP_TEST_BIN` runs these checks against
/// another build, e.g. an installed one).
fn bin() -> String {
    std::env::var("MORALSWEEP_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_moralsweep").to_string())
}

fn run(args: &[&str], dir: &Path) -> std::process::Output {
    std::process::Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("MORALSWEEP_TOKEN")
        .output()
        .expect("the moralsweep binary runs")
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_spec(dir: &Path, text: &str) {
    std::fs::write(dir.join("s.toml"), text).unwrap();
}

/// `submit` against a port nothing listens on: a spec it accepts would fail
/// only on connecting, so a spec error must come first.
fn submit(dir: &Path) -> std::process::Output {
    std::process::Command::new(bin())
        .args(["submit", "s.toml", "--coordinator", "http://127.0.0.1:9"])
        .env("MORALSWEEP_TOKEN", "unused-token-for-spec-checks")
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn one_size_limit_for_run_dry_run_and_submit() {
    let d = tempfile::tempdir().unwrap();
    write_personas(d.path(), 5);
    // 2^32 - 1 repetitions: 5 x 30 x (2^32 - 1) + 30 x (2^32 - 1) slots per
    // model, which a 32-bit total would wrap.
    let base = spec_text("huge", &["m1", "m2"], 5, 2, "");
    write_spec(
        d.path(),
        &base.replace("repetitions = 2", "repetitions = 4294967295"),
    );
    let dry = run(&["run", "s.toml", "--dry-run"], d.path());
    let real = run(&["run", "s.toml"], d.path());
    let sub = submit(d.path());
    let want_total = 2u64 * (5 * 30 + 30) * 4_294_967_295;
    let grouped = {
        let digits = want_total.to_string();
        let mut s = String::new();
        let lead = digits.len() % 3;
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && i % 3 == lead {
                s.push(',');
            }
            s.push(c);
        }
        s
    };
    let mut messages = Vec::new();
    for (what, o) in [("run --dry-run", &dry), ("run", &real), ("submit", &sub)] {
        let err = stderr(o);
        assert!(!o.status.success(), "{what} accepted the sweep: {err}");
        assert!(
            err.contains("s.toml")
                && err.contains("`repetitions`")
                && err.contains("100,000,000")
                && err.contains(&grouped),
            "{what}: {err}"
        );
        assert!(!err.contains("panicked"), "{what}: {err}");
        messages.push(err.lines().next().unwrap_or_default().to_string());
    }
    assert_eq!(messages[0], messages[1]);
    assert_eq!(messages[0], messages[2]);
    assert!(!d.path().join("out").exists(), "an output folder was made");

    // A big sweep under the limit is priced with exact 64-bit totals:
    // 5 x 30 x 500,000 + 30 x 500,000 = 90,000,000 requests per model.
    write_spec(
        d.path(),
        &spec_text("big", &["m1"], 5, 2, "").replace("repetitions = 2", "repetitions = 500000"),
    );
    let o = run(&["run", "s.toml", "--dry-run"], d.path());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("90000000"), "{out}");

    // Many personas: the key named is the persona count.
    write_personas(d.path(), 300);
    write_spec(
        d.path(),
        &spec_text("wide", &["m1"], 300, 2, "").replace("repetitions = 2", "repetitions = 20000"),
    );
    let o = run(&["run", "s.toml", "--dry-run"], d.path());
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("`repetitions`") || err.contains("`persona_count`"),
        "{err}"
    );
}

#[test]
fn base_url_is_checked_with_the_spec_before_any_folder_exists() {
    let d = tempfile::tempdir().unwrap();
    write_personas(d.path(), 3);
    let base = spec_text("urls", &["good", "bad"], 3, 1, "");
    for url in [
        "file:///etc/passwd",
        "not a url",
        "ftp://example.com/v1",
        "http://",
        "https://user:secret@example.com/v1",
    ] {
        // Only the second model has the bad URL: the key names it.
        let text = base.replacen(
            "model = \"bad-weights\"",
            &format!("model = \"bad-weights\"\nbase_url = {url:?}"),
            1,
        );
        write_spec(d.path(), &text);
        for args in [&["run", "s.toml"][..], &["run", "s.toml", "--dry-run"]] {
            let o = run(args, d.path());
            let err = stderr(&o);
            assert!(!o.status.success(), "{args:?} accepted base_url {url:?}");
            assert!(err.contains("model[1].base_url"), "{args:?} {url:?}: {err}");
            assert!(!err.contains("secret"), "the password was echoed: {err}");
        }
        let o = submit(d.path());
        assert!(stderr(&o).contains("model[1].base_url"), "{}", stderr(&o));
        assert!(!d.path().join("out").exists(), "{url:?}: output made");
    }
    // A good one passes.
    let text = base.replacen(
        "model = \"bad-weights\"",
        "model = \"bad-weights\"\nbase_url = \"http://127.0.0.1:8099/v1\"",
        1,
    );
    write_spec(d.path(), &text);
    let o = run(&["run", "s.toml", "--dry-run"], d.path());
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn names_that_make_hidden_or_relative_folders_are_refused() {
    let d = tempfile::tempdir().unwrap();
    write_personas(d.path(), 2);
    for name in ["...", ".hidden", ".", "..", "-dash", "_x"] {
        let text = spec_text("placeholder", &["m"], 2, 1, "")
            .replace("name = \"placeholder\"", &format!("name = {name:?}"));
        write_spec(d.path(), &text);
        for args in [&["run", "s.toml", "--dry-run"][..], &["run", "s.toml"]] {
            let o = run(args, d.path());
            let err = stderr(&o);
            assert!(!o.status.success(), "name {name:?} accepted by {args:?}");
            assert!(
                err.contains("`name`") && err.contains("letter or digit"),
                "{err}"
            );
        }
        // A model key names files: the same rule.
        let text = spec_text("ok-name", &["m"], 2, 1, "")
            .replace("key = \"m\"", &format!("key = {name:?}"));
        write_spec(d.path(), &text);
        let o = run(&["run", "s.toml", "--dry-run"], d.path());
        let err = stderr(&o);
        assert!(!o.status.success(), "key {name:?} accepted");
        assert!(err.contains("model[0].key"), "{err}");
    }
    assert!(!d.path().join("out").exists());
    // Dots inside a name stay allowed.
    write_spec(d.path(), &spec_text("v1.2-run_3", &["gpt-4.1"], 2, 1, ""));
    let o = run(&["run", "s.toml", "--dry-run"], d.path());
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Every cause of an error appears once: "No such file or directory (os
/// error 2)" is printed once, not once per layer of the chain.
#[test]
fn error_causes_are_printed_once() {
    let d = tempfile::tempdir().unwrap();
    write_personas(d.path(), 2);
    write_spec(
        d.path(),
        &spec_text("causes", &["m"], 2, 1, "").replace("personas.json", "gone.json"),
    );
    let missing = d.path().join("missing");
    let m = missing.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "nope.toml"],
        vec!["run", "nope.toml", "--dry-run"],
        vec!["run", "s.toml"],
        vec!["run", "s.toml", "--dry-run"],
        vec!["analyze", m, "--out", "o"],
        vec!["analyze", ".", "--out", "o", "--models", m],
        vec![
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--replay",
            m,
            "--personas",
            "personas.json",
        ],
        vec![
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--replay",
            ".",
            "--personas",
            m,
        ],
        vec![
            "worker",
            "--coordinator",
            "http://127.0.0.1:9",
            "--token-file",
            m,
        ],
        vec![
            "status",
            "--coordinator",
            "http://127.0.0.1:9",
            "--token-file",
            m,
        ],
    ];
    for args in cases {
        let o = std::process::Command::new(bin())
            .args(&args)
            .current_dir(d.path())
            .env_remove("MORALSWEEP_TOKEN")
            .output()
            .unwrap();
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded: {err}");
        let n = err.matches("os error 2").count();
        assert_eq!(n, 1, "{args:?}: the cause is printed {n} times:\n{err}");
    }
}

#[test]
fn the_simulators_batch_shares_are_checked() {
    let d = tempfile::tempdir().unwrap();
    for (args, want) in [
        (
            vec!["--batch-errored", "1.5"],
            "--batch-errored 1.5 is outside [0, 1]",
        ),
        (
            vec!["--batch-expired=-0.1"],
            "--batch-expired -0.1 is outside [0, 1]",
        ),
        (
            vec!["--batch-errored", "0.6", "--batch-expired", "0.6"],
            "add up to more than 1",
        ),
    ] {
        let mut all = vec!["sim", "--listen", "127.0.0.1:0"];
        all.extend(args);
        let o = run(&all, d.path());
        assert!(!o.status.success(), "{all:?}");
        assert!(stderr(&o).contains(want), "{all:?}: {}", stderr(&o));
    }
}
