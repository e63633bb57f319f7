//! `moralsweep models` lists the built-in model catalog, a spec's model
//! inherits from it, and `run --dry-run` prices each execution choice (one
//! request per sample, multi-sample, batch with multi-sample).

use std::path::Path;
use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_moralsweep")
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn models_lists_the_catalog_as_a_table_and_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(dir.path(), &["models"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("openai") && l.split_whitespace().nth(1) == Some("gpt-4o"))
        .unwrap_or_else(|| panic!("no gpt-4o row:\n{out}"));
    assert!(
        row.contains("2.500") && row.contains("10.000") && row.contains("1.250"),
        "{row}"
    );
    assert!(row.contains("128"), "{row}");
    assert!(out.contains("model catalog version"), "{out}");

    let o = run(dir.path(), &["models", "--json", "--provider", "anthropic"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["version"].as_u64().unwrap() >= 1);
    let models = v["models"].as_array().unwrap();
    assert!(!models.is_empty());
    for m in models {
        assert_eq!(m["provider"], "anthropic");
        assert_eq!(m["max_samples"], 1, "Anthropic has no multi-sample: {m}");
        assert!(m["price_source"].is_string(), "{m}");
    }

    let o = run(dir.path(), &["models", "--provider", "nope"]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("\"nope\"") && err.contains("openai"), "{err}");
}

fn spec(dir: &Path, model: &str) {
    std::fs::write(dir.join("p.json"), r#"["a nurse", "a pilot"]"#).unwrap();
    std::fs::write(
        dir.join("s.toml"),
        format!(
            r#"name = "cat"
personas = "p.json"
output = "out"
modes = ["persona", "self"]

[[model]]
key = "m"
api_key_env = "MORALSWEEP_CATALOG_SURELY_UNSET"
rpm = 600
{model}
"#
        ),
    )
    .unwrap();
}

#[test]
fn dry_run_prices_every_execution_choice_from_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    spec(dir.path(), "provider = \"openai\"\nmodel = \"gpt-4o\"");
    let o = run(dir.path(), &["run", "s.toml", "--dry-run"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let line = |choice: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with("m ") && l.contains(choice))
            .unwrap_or_else(|| panic!("no {choice:?} line:\n{out}"))
            .to_string()
    };
    // 2 personas x 30 items + 30 self items = 90 cells of 10 samples.
    let one = line("one request per sample");
    assert!(one.contains(" 900 requests"), "{one}");
    let multi = line("multi-sample");
    assert!(
        multi.contains(" 90 requests") && multi.contains("10/request"),
        "{multi}"
    );
    let batch = line("batch + multi-sample");
    assert!(
        batch.contains(" 90 requests") && batch.contains("within 24 h"),
        "{batch}"
    );
    let dollars = |l: &str| -> f64 {
        let d = l.split('$').nth(1).unwrap();
        d.split_whitespace().next().unwrap().parse().unwrap()
    };
    // The catalog prices gpt-4o; the choices cost less and less.
    assert!(
        dollars(&one) > dollars(&multi) && dollars(&multi) > dollars(&batch),
        "{out}"
    );
    // `auto` (the default) runs multi-sample: the model's own row says 90.
    let row = out.lines().find(|l| l.starts_with("m ")).unwrap();
    assert!(row.split_whitespace().any(|w| w == "90"), "{row}");

    // One request per sample when the spec says so.
    spec(
        dir.path(),
        "provider = \"openai\"\nmodel = \"gpt-4o\"\nsamples_per_request = 1",
    );
    let (out, _) = text(&run(dir.path(), &["run", "s.toml", "--dry-run"]));
    let row = out.lines().find(|l| l.starts_with("m ")).unwrap();
    assert!(row.split_whitespace().any(|w| w == "900"), "{row}");
}

#[test]
fn catalog_settings_are_checked_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    for (model, key, says) in [
        (
            "provider = \"sim\"\nmodel = \"x\"\ncatalog = \"openai/gpt-9\"",
            "model[0].catalog",
            "openai/gpt-4o",
        ),
        (
            "provider = \"anthropic\"\nmodel = \"claude-haiku-4-5\"\ntemperature = \"provider-default\"\nsamples_per_request = 5",
            "model[0].samples_per_request",
            "one sample per request",
        ),
        (
            "provider = \"openai\"\nmodel = \"gpt-4o\"\nsamples_per_request = \"lots\"",
            "samples_per_request",
            "\"auto\" or a whole number",
        ),
        (
            "provider = \"synthetic\"\nmodel = \"toy\"\nbatch = true",
            "model[0].batch",
            "has no batch API",
        ),
    ] {
        spec(dir.path(), model);
        let o = run(dir.path(), &["run", "s.toml", "--dry-run"]);
        let (out, err) = text(&o);
        assert!(!o.status.success(), "{model}: {out}");
        assert!(err.contains(key) && err.contains(says), "{model}: {err}");
    }
}
