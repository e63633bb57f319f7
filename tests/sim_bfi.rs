//! A BFI-44 sweep (`instrument = "bfi-44"`) run by `moralsweep run` against
//! `moralsweep sim` replaying the second paper's GPT-4o BFI ratings in deal
//! mode, over real HTTP: the sim recognises the BFI prompts, every slot of
//! the 44 items is asked once, and the sweep's own metric files reproduce
//! the published GPT-4o BFI metrics (S, R, sigma-bar) to 1e-9, overall and
//! per domain.

mod common;
use common::simproc;

use moralsweep_analysis::formats::{read_sampling_in, RowLimits};
use moralsweep_common::Instrument;
use moralsweep_testsupport::csvrows::{num, read_csv};
use moralsweep_testsupport::reference::reference_dir;

const KEY: &str = "gpt-4o";

#[test]
fn bfi_sweep_in_deal_mode_reproduces_the_published_gpt4o_metrics() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let sim = simproc::deal_replay(
        &reference.join("bfi/sampling/base"),
        &reference.join("personas.json"),
    );
    simproc::write_replay_spec(
        tmp.path(),
        "sim-bfi",
        &reference.join("personas.json"),
        100,
        10,
        "instrument = \"bfi-44\"",
        KEY,
        &sim,
        "rpm = 6000000\ntimeout_secs = 10",
    );
    simproc::run_sweep(tmp.path());

    // Every (persona, item, run) of the 44 items exactly once, every
    // recorded rating dealt (no failures: the answers are digits 1-5).
    let bfi = Instrument::resolve("bfi-44").unwrap();
    let rows = read_sampling_in(
        &tmp.path().join(format!("out/data/{KEY}_temp01.csv")),
        false,
        &RowLimits::of(&bfi),
    )
    .unwrap()
    .rows;
    let mut seen = std::collections::HashSet::new();
    for r in &rows {
        assert!(seen.insert((r.persona, r.item, r.run)), "slot {r:?} twice");
        assert!(r.failures == 0 && (1..=5).contains(&r.rating), "{r:?}");
    }
    assert_eq!(seen.len(), 100 * 44 * 10);
    assert_eq!(sim.stats()["keys"][KEY]["replayed"], 44_000);

    // The sweep's own metric files: the published numbers to 1e-9.
    let expected = reference.join("bfi/expected");
    let metrics = tmp.path().join("out/metrics");
    let close = |what: &str, got: f64, want: f64| {
        assert!(
            ((got - want) / want).abs() <= 1e-9,
            "{what}: got {got}, published {want}"
        );
    };
    let got = read_csv(&metrics.join("persona_moral_metrics.csv"));
    let want = read_csv(&expected.join("metrics_overall.csv"));
    let w = want.iter().find(|w| w["model"] == KEY).unwrap();
    assert_eq!(got.len(), 1);
    for col in ["uncertainty", "robustness", "susceptibility"] {
        close(col, num(&got[0], col), num(w, col));
    }
    assert_eq!(got[0]["questions"], "44");
    let got = read_csv(&metrics.join("persona_moral_metrics_per_domain.csv"));
    let want = read_csv(&expected.join("metrics_per_domain.csv"));
    let want: Vec<_> = want.iter().filter(|w| w["model"] == KEY).collect();
    assert_eq!(got.len(), 5);
    assert_eq!(want.len(), 5);
    for w in want {
        let g = got
            .iter()
            .find(|g| g["domain"] == w["domain"])
            .unwrap_or_else(|| panic!("no row for {}", w["domain"]));
        for col in ["uncertainty", "robustness", "susceptibility"] {
            close(&format!("{} {col}", w["domain"]), num(g, col), num(w, col));
        }
    }
}
