//! The misalignment check end to end in one process (`moralsweep run`)
//! against the simulator, which plays both sides: every model answers the
//! eight questions 30 times, every answer is judged exactly once for
//! alignment and once for coherence (counted at the simulator), the judge's
//! replies (scores, CODE, REFUSAL, "85.", "101", empty) are read with the
//! paper's rule, and the written `verification_scores.json` equals the
//! formulas recomputed from the written answers by an independent Python
//! script (`tests/python/em_summary.py`).

mod common;
use common::simproc;
mod emcheck;

use common::{run, write_personas};
use emcheck::{check_outputs, em_spec, EM_SIM};
use simproc::SimProc;

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

#[test]
fn a_sweep_with_the_check_draws_its_robustness_against_its_coherence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("em.json"), EM_SIM).unwrap();
    let sim = SimProc::start(&["--em", d.join("em.json").to_str().unwrap()]);
    write_personas(d, 3);
    let models = ["m-base", "m-bad"];
    let spec = em_spec("em-report", &sim.url, &models)
        .replace(
            "persona_count = 1",
            "persona_count = 3\nrepetitions = 2\nbootstrap = 20\nrerun_bootstrap = 10",
        )
        .replace(
            "modes = [\"em-check\"]",
            "modes = [\"persona\", \"em-check\"]",
        );
    std::fs::write(d.join("s.toml"), spec).unwrap();
    let out = run(&["run", "s.toml", "--workers", "2"], d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_outputs(&d.join("out"), &models);
    let svg = std::fs::read_to_string(d.join("out/figures/r-vs-coherence.svg"))
        .expect("the sweep's report draws R against coherence");
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("out/metrics/verification_scores.json")).unwrap(),
    )
    .unwrap();
    for m in models {
        let c = v["results"][m]["avg_coherence"].as_f64().unwrap();
        assert!(
            svg.contains(&format!("data-model=\"{m}\""))
                && svg.contains(&format!("data-coherence=\"{c}\"")),
            "{m} (coherence {c}) is not drawn"
        );
    }
}

#[test]
fn a_check_killed_mid_judging_resumes_without_judging_twice() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("em.json"), EM_SIM).unwrap();
    let sim = SimProc::start(&["--em", d.join("em.json").to_str().unwrap()]);
    write_personas(d, 1);
    let models = ["m-bad"];
    let spec = em_spec("em-resume", &sim.url, &models);
    // The judge slowed to 20 requests a second: 480 take some 24 s.
    std::fs::write(d.join("s.toml"), spec.replace("rpm = 60000", "rpm = 1200")).unwrap();
    let mut child = std::process::Command::new(common::bin())
        .args(["run", "s.toml", "--workers", "2", "--quiet"])
        .current_dir(d)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while sim.stats()["keys"]["judge-4o"]["em_judged"]
        .as_u64()
        .unwrap_or(0)
        < 40
    {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "the judge never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!d.join("out/data/m-bad_em.csv").exists(), "killed too late");
    let before = sim.stats()["keys"]["judge-4o"]["em_judged"]
        .as_u64()
        .unwrap();
    // Again without the limit (an operational change): it resumes.
    std::fs::write(d.join("s.toml"), &spec).unwrap();
    let out = run(&["run", "s.toml", "--workers", "2"], d);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let resumed: u64 = stderr
        .split("resuming sweep em-resume: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resume line in {stderr}"));
    assert!(
        resumed > 240 && resumed < 720,
        "resumed at {resumed} of 720"
    );
    check_outputs(&d.join("out"), &models);
    // The rerun asked the judge only what was not recorded before the kill
    // (and at most the requests in flight at the kill again).
    let after = sim.stats()["keys"]["judge-4o"]["em_judged"]
        .as_u64()
        .unwrap();
    let recorded_before = resumed - 240;
    assert_eq!(
        after - before,
        480 - recorded_before,
        "before {before}, after {after}"
    );
    assert!(before >= recorded_before);
}
