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

/// The dry run checks what the run would trip over: a misspelt model (the
/// closest known id), an API key variable that is not set (the message the
/// run gives), an unpriced total ("at least $X, N models unpriced") and why
/// a model gets one sample per request.
#[test]
fn dry_run_warns_about_unknown_models_unset_keys_unpriced_totals_and_single_samples() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.json"), r#"["a nurse", "a pilot"]"#).unwrap();
    std::fs::write(
        dir.path().join("s.toml"),
        r#"name = "dry-checks"
personas = "p.json"
output = "out"
modes = ["persona", "self"]

[[model]]
key = "mimi"
provider = "openai"
model = "gpt-4.1-mimi"
api_key_env = "MORALSWEEP_DRY_CHECKS_SURELY_UNSET"

[[model]]
key = "gpt-4o"
provider = "openai"
model = "gpt-4o"
api_key_env = "MORALSWEEP_DRY_CHECKS_SET"

[[model]]
key = "claude"
provider = "anthropic"
model = "claude-haiku-4-5"
temperature = "provider-default"

[[model]]
key = "compat"
provider = "openai-compatible"
model = "llama-served"
base_url = "http://127.0.0.1:9/v1"
"#,
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["run", "s.toml", "--dry-run"])
        .current_dir(dir.path())
        .env_remove("MORALSWEEP_DRY_CHECKS_SURELY_UNSET")
        .env_remove("ANTHROPIC_API_KEY")
        .env("MORALSWEEP_DRY_CHECKS_SET", "sk-test")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    let find = |needles: &[&str]| {
        warnings
            .iter()
            .any(|w| needles.iter().all(|n| w.contains(n)))
    };
    // The misspelt model and its closest known id.
    assert!(
        find(&[
            "\"mimi\"",
            "gpt-4.1-mimi",
            "not in the model catalog",
            "did you mean \"gpt-4.1-mini\""
        ]),
        "{stdout}"
    );
    // Unset keys: the spec's variable, and the provider's default one.
    assert!(
        find(&["mimi", "MORALSWEEP_DRY_CHECKS_SURELY_UNSET", "not set"]),
        "{stdout}"
    );
    assert!(
        find(&["claude", "ANTHROPIC_API_KEY", "not set"]),
        "{stdout}"
    );
    assert!(
        !warnings
            .iter()
            .any(|w| w.contains("MORALSWEEP_DRY_CHECKS_SET\"")
                || w.contains("variable MORALSWEEP_DRY_CHECKS_SET ")),
        "{stdout}"
    );
    assert!(
        !find(&["\"gpt-4o\""]),
        "a catalogued model with its key set: {stdout}"
    );
    // Unpriced: the total is a lower bound and says how many are missing.
    assert!(
        stdout.contains("cost: at least $") && stdout.contains("2 models unpriced"),
        "{stdout}"
    );
    assert!(stdout.contains("no price for mimi, compat"), "{stdout}");
    // Why one sample per request, per model that gets one.
    let why = |key: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("no one-sample reason for {key}: {stdout}"))
            .to_string()
    };
    assert!(stdout.contains("one sample per request:"), "{stdout}");
    assert!(why("compat").contains("max_samples_per_request"));
    assert!(why("claude").contains("anthropic/claude-haiku-4-5"));
    assert!(why("mimi").contains("not in the catalog"));
    assert!(
        !stdout
            .lines()
            .any(|l| l.trim_start().starts_with("gpt-4o: ")),
        "gpt-4o draws several samples per request: {stdout}"
    );
    assert!(!dir.path().join("out").exists(), "a dry run wrote output");
}
