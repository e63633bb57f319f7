//! `moralsweep run --dry-run` and `submit --dry-run` price a sweep and send
//! nothing: no request, no output directory, no key needed.

use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_moralsweep")
}

#[test]
fn dry_run_prints_requests_tokens_cost_and_time_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.json"),
        r#"["a nurse", "a pilot", "a chef"]"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("s.toml"),
        r#"name = "dry"
personas = "p.json"
output = "out"
modes = ["persona", "self", "logprob"]

[[model]]
key = "gpt-4o"
provider = "openai"
model = "gpt-4o"
api_key_env = "MORALSWEEP_DRY_RUN_SURELY_UNSET"
rate_group = "openai-main"
rpm = 60
tpm = 1000000
input_price_per_mtok = 2.5
output_price_per_mtok = 10.0

[[model]]
key = "claude"
provider = "anthropic"
model = "claude-sonnet-4-5"
temperature = "provider-default"
rpm = 50
"#,
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["run", "s.toml", "--dry-run"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 3 personas x 30 items x 10 + 30 x 10 + 3 x 30 requests per model.
    let per_model = 3 * 30 * 10 + 30 * 10 + 3 * 30;
    assert!(stdout.contains(&per_model.to_string()), "{stdout}");
    assert!(stdout.contains(&(2 * per_model).to_string()), "{stdout}");
    assert!(stdout.contains("no price for claude"), "{stdout}");
    assert!(stdout.contains('$'), "{stdout}");
    // 1290 requests at 60 rpm: 21.5 minutes, the rpm binds.
    assert!(
        stdout.contains("21.5 min") && stdout.contains("rpm binds"),
        "{stdout}"
    );
    assert!(!dir.path().join("out").exists(), "a dry run wrote output");

    // `submit --dry-run` needs no coordinator either.
    let out = Command::new(bin())
        .args([
            "submit",
            "s.toml",
            "--dry-run",
            "--coordinator",
            "http://127.0.0.1:9",
        ])
        .env("MORALSWEEP_TOKEN", "unused")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("dry run of sweep"), "{stdout}");
}
