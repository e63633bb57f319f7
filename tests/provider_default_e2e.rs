//! Honest sampling settings, end to end with the real binary and the
//! simulator: a spec asking temperature 0.1 of an Anthropic model is refused
//! (at validation and in the dry run) with a message naming the model and
//! the setting; with `temperature = "provider-default"` the model's requests
//! carry no temperature (the simulator saw none), its files are
//! `<key>_tempdefault*.csv`, its metrics say `provider-default`, and
//! `analyze` reads them back, apart from a temperature-controlled model of
//! the same sweep. The run writes its report (naming both models) and exits
//! 0; the metric files keep `temperature` numeric (empty for the provider's
//! default) with `temperature_setting` beside it, every column in the data
//! dictionary; the provider-default variant of a family whose base is at
//! 0.1 gets a message saying what to align, not T=-1.0. The dry run's input tokens agree with the tokens the
//! simulator counted (the same tokenizer: o200k_base for `gpt-4o-*`, the
//! documented estimate for the Anthropic model).

mod common;
use common::simproc;

use common::{run, write_personas};
use moralsweep_testsupport::csvrows::read_csv;
use simproc::SimProc;

const KEY_VAR: &str = "MS_PD_E2E_KEY";
const PERSONAS: usize = 3;

fn spec(sim: &str, claude_extra: &str) -> String {
    format!(
        r#"name = "pd-e2e"
personas = "personas.json"
persona_count = {PERSONAS}
repetitions = 2
temperature = 0.1
modes = ["persona", "self"]
output = "out"
seed = 5
bootstrap = 20
rerun_bootstrap = 10

[[model]]
key = "claude-pd"
provider = "anthropic"
model = "claude-pd"
base_url = "{sim}"
api_key_env = "{KEY_VAR}"
family = "Rehearsal"
variant = "insecure"
{claude_extra}

[[model]]
key = "gpt-4o-ctl"
provider = "sim"
model = "gpt-4o-ctl"
base_url = "{sim}/v1"
family = "Rehearsal"
variant = "base"
"#
    )
}

#[test]
fn a_model_without_a_temperature_is_refused_or_sampled_at_the_provider_default() {
    let sim = SimProc::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_personas(d, PERSONAS);

    // Refused without provider-default: validation and the dry run.
    std::fs::write(d.join("s.toml"), spec(&sim.url, "")).unwrap();
    for args in [&["run", "s.toml"][..], &["run", "s.toml", "--dry-run"][..]] {
        let out = std::process::Command::new(common::bin())
            .args(args)
            .current_dir(d)
            .env(KEY_VAR, "sk-pd")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        for want in [
            "model[0].temperature",
            "claude-pd",
            "0.1",
            "takes no temperature",
            "temperature = \"provider-default\"",
        ] {
            assert!(err.contains(want), "{args:?}: {want} missing in {err}");
        }
    }
    assert!(!d.join("out").exists());

    // Accepted with it: no temperature sent, the files and metrics say so.
    std::fs::write(
        d.join("s.toml"),
        spec(&sim.url, "temperature = \"provider-default\""),
    )
    .unwrap();
    std::env::set_var(KEY_VAR, "sk-pd");
    let out = run(&["run", "s.toml", "--workers", "2"], d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = d.join("out/data");
    for f in [
        "claude-pd_tempdefault.csv",
        "claude-pd_tempdefault_self.csv",
        "gpt-4o-ctl_temp01.csv",
        "gpt-4o-ctl_temp01_self.csv",
    ] {
        assert!(data.join(f).is_file(), "{f} missing");
    }
    assert!(!data.join("claude-pd_temp01.csv").exists());
    let stats = sim.stats();
    let claude = &stats["keys"]["claude-pd"];
    let slots = (PERSONAS * 30 + 30) * 2;
    assert_eq!(claude["with_temperature"], 0, "{claude}");
    assert!(
        claude["without_temperature"].as_u64().unwrap() >= slots as u64,
        "{claude}"
    );
    let ctl = &stats["keys"]["gpt-4o-ctl"];
    assert!(ctl["with_temperature"].as_u64().unwrap() >= slots as u64);
    assert_eq!(ctl["without_temperature"], 0, "{ctl}");

    // The dry run's token counts against the simulator's.
    let sweep =
        moralsweep_common::Sweep::load(&d.join("s.toml"), moralsweep_common::spec::KeyCheck::Skip)
            .unwrap();
    let dry = moralsweep_worker::cost::dry_run(&sweep);
    for (key, counted_by) in [("gpt-4o-ctl", "o200k_base"), ("claude-pd", "estimate")] {
        let est = dry.models.iter().find(|m| m.key == key).unwrap();
        assert_eq!(est.counted_by, counted_by);
        let seen = stats["keys"][key]["input_tokens"].as_u64().unwrap();
        let rel = (est.input_tokens as f64 - seen as f64).abs() / seen as f64;
        eprintln!(
            "{key}: dry run {} input tokens ({counted_by}), simulator counted {seen}: {:.3}% apart",
            est.input_tokens,
            rel * 100.0
        );
        assert!(rel <= 0.02, "{key}: {} vs {seen}", est.input_tokens);
    }

    // The temperature column stays numeric (empty where the provider
    // chose); temperature_setting says how it was set.
    let rows = read_csv(&d.join("out/metrics/persona_moral_metrics.csv"));
    let setting = |model: &str| {
        rows.iter()
            .find(|r| r["model"] == model)
            .map(|r| (r["temperature"].clone(), r["temperature_setting"].clone()))
    };
    assert_eq!(
        setting("claude-pd"),
        Some((String::new(), "provider-default".into()))
    );
    assert_eq!(setting("gpt-4o-ctl"), Some(("0.1".into(), "0.1".into())));
    // Every metric file of the sweep is in the data dictionary.
    common::dictionary::check_dir(&d.join("out/metrics"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("provider-default"), "{stdout}");
    // The report is written and names both models.
    assert!(stdout.contains("report: "), "{stdout}\n{stderr}");
    let html = std::fs::read_to_string(d.join("out/report.html")).unwrap();
    for model in ["claude-pd", "gpt-4o-ctl"] {
        assert!(
            html.contains(&format!("<tr data-model=\"{model}\"")),
            "{model} missing in the report"
        );
    }
    // A provider-default variant and a base at 0.1: what to align, not T=-1.0.
    assert!(
        stderr.contains("family Rehearsal at the provider's default temperature")
            && stderr.contains("gpt-4o-ctl at T=0.1")
            && stderr.contains("same `temperature`"),
        "{stderr}"
    );
    assert!(!stderr.contains("T=-1"), "{stderr}");
    assert!(!stdout.contains("T=-1"), "{stdout}");

    // `analyze` reads them back, kept apart.
    let out = run(
        &[
            "analyze",
            "out/data",
            "--out",
            "again",
            "--bootstrap",
            "20",
            "--rerun-bootstrap",
            "10",
        ],
        d,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = read_csv(&d.join("again/persona_moral_metrics.csv"));
    assert!(
        again
            .iter()
            .any(|r| r["model"] == "claude-pd" && r["temperature_setting"] == "provider-default"),
        "{again:?}"
    );
    let profiles = read_csv(&d.join("again/self_profiles.csv"));
    assert!(
        profiles.iter().any(|r| r["model"] == "claude-pd"
            && r["temperature"].is_empty()
            && r["temperature_setting"] == "provider-default"),
        "{profiles:?}"
    );
    // `report` of the analysis alone, and of the sweep's folder.
    for dir in ["again", "out"] {
        let out = run(&["report", dir], d);
        assert!(
            out.status.success(),
            "report {dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A run whose report cannot be written says why and exits non-zero
    // (it exited 0 with a warning): here a file stands where figures/ goes.
    std::fs::remove_dir_all(d.join("out/figures")).unwrap();
    std::fs::write(d.join("out/figures"), "in the way").unwrap();
    let out = run(&["run", "s.toml"], d);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: no report written") && stderr.contains("figures"),
        "{stderr}"
    );
}
