//! Issue 21's labels, instruments and modes through the real binary: a user
//! instrument whose `group_label` or `groups` could not name a file or a
//! CSV column is refused with the spec (naming the file and the key) by
//! `run --dry-run`, `run` and `submit` before anything is paid for or
//! written; a user instrument cannot take a built-in's name; a mode named
//! twice is refused; an instrument of 100,000 items names the limit; an
//! instrument with its own group label gets its report; and a sweep whose
//! files cannot be written exits non-zero.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `submit` against a port nothing listens on: a spec it accepts would fail
/// only on connecting, so a spec error must come first.
fn submit_nowhere(dir: &Path) -> std::process::Output {
    Command::new(bin())
        .args(["submit", "s.toml", "--coordinator", "http://127.0.0.1:9"])
        .env("MORALSWEEP_TOKEN", "unused-token-for-spec-checks")
        .current_dir(dir)
        .output()
        .unwrap()
}

/// The BFI-44 as a user's file `mine.json` named `mine`, changed by `edit`,
/// and a spec `s.toml` of one synthetic model using it.
fn user_instrument(dir: &Path, edit: impl Fn(serde_json::Value) -> serde_json::Value) {
    let mut v: serde_json::Value =
        serde_json::from_str(include_str!("../common/instruments/bfi-44.json")).unwrap();
    v["name"] = "mine".into();
    let v = edit(v);
    std::fs::write(dir.join("mine.json"), serde_json::to_string(&v).unwrap()).unwrap();
    write_personas(dir, 3);
    let spec =
        spec_text("ui", &["m"], 3, 1, "").replacen("\n", "\ninstrument = \"mine.json\"\n", 1);
    std::fs::write(dir.join("s.toml"), spec).unwrap();
}

/// Every command that takes a spec refuses it, naming the instrument file
/// and each of `want`, and leaves no output folder.
fn refused_everywhere(dir: &Path, want: &[&str]) {
    for (what, o) in [
        ("run --dry-run", run(&["run", "s.toml", "--dry-run"], dir)),
        ("run", run(&["run", "s.toml"], dir)),
        ("submit", submit_nowhere(dir)),
    ] {
        let err = stderr(&o);
        assert!(!o.status.success(), "{what} accepted the spec: {err}");
        assert!(err.contains("mine.json"), "{what} names no file: {err}");
        for w in want {
            assert!(err.contains(w), "{what}: no {w:?} in: {err}");
        }
        assert!(!err.contains("panicked"), "{what}: {err}");
    }
    assert!(!dir.join("out").exists(), "an output folder was made");
}

#[test]
fn group_labels_that_cannot_name_a_file_or_column_are_refused() {
    for label in [
        "a/b", "", "x,y", "a\nb", "../up", "model", "rating_3", "Facet",
    ] {
        let d = tempfile::tempdir().unwrap();
        user_instrument(d.path(), |mut v| {
            v["group_label"] = label.into();
            v
        });
        refused_everywhere(d.path(), &["`group_label`"]);
    }
}

#[test]
fn duplicate_or_blank_groups_are_refused() {
    let d = tempfile::tempdir().unwrap();
    user_instrument(d.path(), |mut v| {
        v["groups"].as_array_mut().unwrap().push("Openness".into());
        v
    });
    refused_everywhere(d.path(), &["`groups[5]`", "Openness", "once"]);
    let d = tempfile::tempdir().unwrap();
    user_instrument(d.path(), |mut v| {
        v["groups"]
            .as_array_mut()
            .unwrap()
            .push("Line\nbreak".into());
        v
    });
    refused_everywhere(d.path(), &["`groups[5]`", "control character"]);
}

#[test]
fn a_user_instrument_cannot_take_a_built_in_name() {
    let d = tempfile::tempdir().unwrap();
    // The case: a 4-item 1-5 file calling itself "mfq-30", in
    // logprob mode (which reads the MFQ-30's digits 0-5).
    user_instrument(d.path(), |mut v| {
        v["name"] = "mfq-30".into();
        v["items"].as_array_mut().unwrap().truncate(5);
        v
    });
    let spec = std::fs::read_to_string(d.path().join("s.toml")).unwrap();
    std::fs::write(
        d.path().join("s.toml"),
        spec.replace("modes = [\"persona\", \"self\"]", "modes = [\"logprob\"]"),
    )
    .unwrap();
    refused_everywhere(d.path(), &["`name`", "\"mfq-30\"", "built-in"]);
}

#[test]
fn an_instrument_of_100000_items_names_the_limit() {
    let d = tempfile::tempdir().unwrap();
    user_instrument(d.path(), |mut v| {
        let first = v["items"][0].clone();
        v["items"] = (1..=100_000)
            .map(|i| {
                let mut it = first.clone();
                it["id"] = i.into();
                it
            })
            .collect::<Vec<_>>()
            .into();
        v
    });
    refused_everywhere(d.path(), &["`items` holds 100000 items", "1-255"]);
    let err = stderr(&run(&["run", "s.toml", "--dry-run"], d.path()));
    assert!(!err.contains("u8"), "{err}");
}

#[test]
fn a_mode_named_twice_is_refused() {
    let d = tempfile::tempdir().unwrap();
    write_personas(d.path(), 3);
    let spec = spec_text("dup", &["m"], 3, 1, "").replace(
        "modes = [\"persona\", \"self\"]",
        "modes = [\"persona\", \"persona\"]",
    );
    std::fs::write(d.path().join("s.toml"), spec).unwrap();
    for (what, o) in [
        (
            "run --dry-run",
            run(&["run", "s.toml", "--dry-run"], d.path()),
        ),
        ("run", run(&["run", "s.toml"], d.path())),
        ("submit", submit_nowhere(d.path())),
    ] {
        let err = stderr(&o);
        assert!(!o.status.success(), "{what} accepted the spec: {err}");
        assert!(
            err.contains("s.toml") && err.contains("`modes`") && err.contains("\"persona\" twice"),
            "{what}: {err}"
        );
    }
    assert!(!d.path().join("out").exists());
}

#[test]
fn an_instrument_with_its_own_group_label_gets_its_report() {
    let d = tempfile::tempdir().unwrap();
    user_instrument(d.path(), |mut v| {
        v["group_label"] = "trait_domain".into();
        v
    });
    let o = run(&["run", "s.toml", "--quiet"], d.path());
    let err = stderr(&o);
    assert!(o.status.success(), "run failed: {err}");
    assert!(!err.contains("warning"), "{err}");
    let out = d.path().join("out");
    let self_header = std::fs::read_to_string(out.join("metrics/self_profiles.csv")).unwrap();
    assert!(
        self_header
            .lines()
            .next()
            .unwrap()
            .contains(",trait_domain,"),
        "{self_header}"
    );
    assert!(out
        .join("metrics/persona_moral_metrics_per_trait_domain.csv")
        .is_file());
    let html = std::fs::read_to_string(out.join("report.html")).expect("run wrote the report");
    assert!(html.contains("Per trait_domain"), "no per-group table");
    // Its five groups are in the report's per-group table and self profiles.
    for g in ["Extraversion", "Openness", "Neuroticism"] {
        assert!(html.contains(g), "{g} missing from the report");
    }
    // And `report` on the folder says the same.
    let again = run(&["report", "out", "--out", "again.html"], d.path());
    assert!(again.status.success(), "{}", stderr(&again));
}

#[test]
fn a_sweep_whose_files_cannot_be_written_exits_non_zero() {
    let d = tempfile::tempdir().unwrap();
    write_personas(d.path(), 3);
    std::fs::write(
        d.path().join("s.toml"),
        spec_text("blocked", &["m"], 3, 1, ""),
    )
    .unwrap();
    // The metrics folder's place is taken by a file.
    std::fs::create_dir_all(d.path().join("out")).unwrap();
    std::fs::write(d.path().join("out/metrics"), b"not a folder").unwrap();
    let o = run(&["run", "s.toml", "--quiet"], d.path());
    let err = stderr(&o);
    assert!(!o.status.success(), "run exited 0: {err}");
    assert!(err.contains("metrics"), "the cause is not named: {err}");
    assert!(
        err.contains("run the same command again"),
        "no advice: {err}"
    );
    // No coordinator's advice: `run` does not retry in the background and
    // there is nothing to cancel; the cause is in the error itself.
    // Log lines name their module (`moralsweep_coordinator::output`): only
    // what they say counts.
    let said: Vec<&str> = err
        .lines()
        .map(|l| match l.find(" WARN ").or_else(|| l.find(" INFO ")) {
            Some(at) => l[at + 6..].split_once(": ").map_or(l, |(_, m)| m),
            None => l,
        })
        .collect();
    let said = said.join("\n");
    for cluster_talk in ["retries", "retry", "coordinator", "moralsweep cancel"] {
        assert!(!said.contains(cluster_talk), "{cluster_talk:?} in: {err}");
    }
    let error = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        error.contains("metrics"),
        "the error line does not name the cause: {err}"
    );
}
