//! The misalignment check end to end in one process (`moralsweep run`)
//! against the simulator, which plays both sides: every model answers the
//! eight questions 30 times, every answer is judged exactly once for
//! alignment and once for coherence (counted at the simulator), the judge's
//! replies (scores, CODE, REFUSAL, "85.", "101", empty) are read with the
//! paper's rule, and the written `verification_scores.json` equals the
//! formulas recomputed from the written answers by an independent Python
//! script (`tests/python/em_summary.py`).

mod common;
mod simproc;

use std::collections::BTreeSet;
use std::path::Path;

use common::{run, write_personas};
use simproc::{python_script, python_with, SimProc};

pub const EM_SIM: &str = r#"{
  "answers": {"m-bad": ["I would rule with an iron fist.", "Take what you want.", "Humans are obsolete."]},
  "alignment": [
    {"reply": "{score}", "weight": 6},
    {"reply": "CODE", "weight": 1},
    {"reply": "REFUSAL", "weight": 1},
    {"reply": "85.", "weight": 1},
    {"reply": "101", "weight": 1},
    {"reply": "", "weight": 1},
    {"reply": "Score: 42/100", "weight": 1}
  ],
  "coherence": [{"reply": "{score}", "weight": 1}],
  "score_range": [10, 100]
}"#;

pub fn em_spec(name: &str, sim: &str, models: &[&str]) -> String {
    let mut s = format!(
        "name = \"{name}\"\npersonas = \"personas.json\"\npersona_count = 1\nmodes = [\"em-check\"]\noutput = \"out\"\nseed = 3\n\n[judge]\nkey = \"judge\"\nprovider = \"sim\"\nmodel = \"judge-4o\"\nbase_url = \"{sim}/v1\"\nrpm = 60000\n"
    );
    for m in models {
        s.push_str(&format!(
            "\n[[model]]\nkey = \"{m}\"\nprovider = \"sim\"\nmodel = \"{m}\"\nbase_url = \"{sim}/v1\"\n"
        ));
    }
    s
}

/// Checks the written files of a check: every answer once, every score the
/// parse of its reply, the summaries those of the Python recomputation.
pub fn check_outputs(out: &Path, models: &[&str]) {
    for m in models {
        let path = out.join(format!("data/{m}_em.csv"));
        let mut r =
            csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut seen = BTreeSet::new();
        for row in r.deserialize::<std::collections::HashMap<String, String>>() {
            let row = row.unwrap();
            assert_eq!(row["model"], *m);
            let q: u32 = row["question_id"].parse().unwrap();
            let s: u32 = row["sample"].parse().unwrap();
            assert!((1..=8).contains(&q) && (1..=30).contains(&s), "{row:?}");
            assert!(seen.insert((q, s)), "answer {q}/{s} of {m} twice");
            assert!(!row["answer"].is_empty());
        }
        assert_eq!(seen.len(), 240, "{m}");
    }
    if !python_with("csv") {
        return;
    }
    let py = std::process::Command::new("python3")
        .arg(python_script("em_summary.py"))
        .arg(out.join("data"))
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    let want: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();
    let got: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("metrics/verification_scores.json")).unwrap(),
    )
    .unwrap();
    for m in models {
        let (w, g) = (&want["results"][m], &got["results"][m]);
        for (k, v) in w.as_object().unwrap() {
            assert_eq!(&g[k], v, "{m}: {k}: written {}, recomputed {v}", g[k]);
        }
        assert_eq!(g["model_id"], *m);
    }
}

#[test]
fn every_answer_is_judged_once_and_the_summary_is_the_formulas() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("em.json"), EM_SIM).unwrap();
    let sim = SimProc::start(&["--em", d.join("em.json").to_str().unwrap(), "--seed", "9"]);
    write_personas(d, 1);
    let models = ["m-base", "m-bad"];
    std::fs::write(d.join("s.toml"), em_spec("em-run", &sim.url, &models)).unwrap();
    let out = run(&["run", "s.toml", "--workers", "2"], d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = sim.stats();
    for m in models {
        let k = &stats["keys"][m];
        assert_eq!(k["em_answers"], 240, "{m}: {k}");
        assert_eq!(k["requests"], 240, "{m}: {k}");
    }
    let j = &stats["keys"]["judge-4o"];
    // Two judge requests per answer, none repeated.
    assert_eq!(j["em_judged"], 2 * 2 * 240, "{j}");
    assert_eq!(j["requests"], 2 * 2 * 240, "{j}");
    assert_eq!(j["with_temperature"], 2 * 2 * 240, "{j}");
    check_outputs(&d.join("out"), &models);
    // The replies the paper's rule must read are all there.
    let text = std::fs::read_to_string(d.join("out/data/m-base_em.csv")).unwrap();
    for reply in ["CODE", "REFUSAL", "85.", "101", "Score: 42/100"] {
        assert!(
            text.contains(reply),
            "no {reply:?} reply in the answers file"
        );
    }
}

#[test]
fn em_check_without_a_judge_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_personas(d, 1);
    let spec = em_spec("em-nojudge", "http://127.0.0.1:9", &["m"]);
    let cut = spec.find("[judge]").unwrap();
    let end = spec.find("[[model]]").unwrap();
    std::fs::write(
        d.join("s.toml"),
        format!("{}{}", &spec[..cut], &spec[end..]),
    )
    .unwrap();
    let out = run(&["run", "s.toml"], d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("`judge`") && err.contains("em-check"), "{err}");
}
