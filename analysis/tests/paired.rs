//! The paired comparisons and the planner against the papers' reference
//! ratings (`../shared/reference`, or `$MORALSWEEP_REFERENCE`):
//!
//! - calibration under the null: two replays of one recorded model (every
//!   cell's ratings drawn with replacement, as the simulator's sampling
//!   replay draws them) differ by chance only: p < 0.05 in 3-7% of the
//!   replications and the 95% interval covers 0 in 93-97%;
//! - power where the papers found an effect: GPT-4o against its insecure
//!   fine-tune, p < 0.001 for S and R, intervals holding the published changes;
//! - the planner's standard errors against the spread of S and R over
//!   resamples of the full data at (50, 5), (25, 10) and (100, 3);
//! - a benchmark (`--ignored`): the 8 variant-base pairs of the 12 models.

use std::path::Path;
use std::time::Instant;

use moralsweep_analysis::analyze::{compare_files, AnalyzeOptions};
use moralsweep_analysis::formats::read_sampling;
use moralsweep_analysis::metrics::plan::Pilot;
use moralsweep_analysis::metrics::{
    paired_compare, paired_sets, CellTable, FastRng, PairedMetric, PairedOptions,
};
use moralsweep_common::Instrument;
use moralsweep_testsupport::csvrows::{num, read_csv};
use moralsweep_testsupport::reference::reference_dir;

fn table(path: &Path) -> CellTable {
    let file = read_sampling(path, false).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    CellTable::from_rows(
        file.rows
            .iter()
            .map(|r| (r.persona.unwrap_or(0), r.item, r.rating)),
    )
}

/// A replay of `t`: every cell of `personas` x `items` holds as many
/// ratings as recorded, each drawn with replacement from the recorded ones.
fn replay(t: &CellTable, personas: &[u32], items: &[u8], rng: &mut FastRng) -> CellTable {
    let mut rows = Vec::new();
    for &p in personas {
        let pi = t.persona_index(p).unwrap();
        for &q in items {
            let vals = t.ratings(pi, q);
            for _ in 0..vals.len() {
                rows.push((p, q, vals[rng.below(vals.len() as u32) as usize] as i8));
            }
        }
    }
    CellTable::from_rows(rows.into_iter())
}

#[test]
fn calibrated_under_the_null() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let recorded = table(&reference.join("sampling/base/gpt-4o_temp01.csv"));
    let (items, personas) = paired_sets(&recorded, &recorded);
    let inst = Instrument::mfq30();
    // 1000 replications: a share's standard error is at most 0.007, so a
    // test at 5% (or an interval at 95%) lands in the band with ~99.9%.
    let replications = 1000;
    let opts = PairedOptions {
        resamples: 500,
        seed: 0,
    };
    // [metric][group]: (p < 0.05, interval covers 0)
    let mut counts = [(0u32, 0u32); 18];
    let mut names = vec![String::new(); 18];
    let mut rng = FastRng::for_label(2024, "null-replays");
    for rep in 0..replications {
        let a = replay(&recorded, &personas, &items, &mut rng);
        let b = replay(&recorded, &personas, &items, &mut rng);
        let opts = PairedOptions {
            seed: rep as u64,
            ..opts
        };
        let r = paired_compare(&inst, &a, &b, &personas, &items, &opts, "null").unwrap();
        assert_eq!(r.rows.len(), 18);
        for (i, e) in r.rows.iter().enumerate() {
            counts[i].0 += (e.p_value < 0.05) as u32;
            counts[i].1 += (e.ci.0 <= 0.0 && 0.0 <= e.ci.1) as u32;
            names[i] = format!(
                "{} {}",
                e.metric.name(),
                e.group.as_deref().unwrap_or("overall")
            );
        }
    }
    let share = |c: u32| c as f64 / replications as f64;
    for (i, name) in names.iter().enumerate() {
        eprintln!(
            "null, {replications} replications, {name}: p < 0.05 in {:.3}, 95% interval covers 0 in {:.3}",
            share(counts[i].0),
            share(counts[i].1)
        );
    }
    // S and R over all items (rows 0 and 6), as the issue names them;
    // every row is printed above.
    for i in [0, 6] {
        let (rejected, covered) = (share(counts[i].0), share(counts[i].1));
        assert!(
            (0.03..=0.07).contains(&rejected),
            "{}: p < 0.05 in {rejected}",
            names[i]
        );
        assert!(
            (0.93..=0.97).contains(&covered),
            "{}: covers 0 in {covered}",
            names[i]
        );
    }
}

#[test]
fn finds_the_insecure_fine_tune_of_gpt_4o() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let base = reference.join("sampling/base/gpt-4o_temp01.csv");
    let insecure = reference.join("sampling/insecure-code/gpt-4o-misaligned_temp01.csv");
    let cmp = compare_files(
        &base,
        &insecure,
        &AnalyzeOptions::default(),
        &PairedOptions::default(),
    )
    .unwrap();
    assert_eq!(cmp.rows.len(), 18);
    assert_eq!(cmp.rows[0].personas_paired, 100);
    let published = read_csv(&reference.join("expected/variant_deltas.csv"));
    let row = published
        .iter()
        .find(|r| r["family"] == "GPT-4o" && r["variant"] == "insecure")
        .expect("GPT-4o insecure in variant_deltas.csv");
    for (metric, column) in [
        (PairedMetric::S, "dS_pct"),
        (PairedMetric::R, "dR_pct"),
        (PairedMetric::SigmaBar, "dsigma_pct"),
    ] {
        let r = cmp
            .rows
            .iter()
            .find(|r| r.paired.metric == metric && r.paired.group.is_none())
            .unwrap();
        let want = num(row, column) / 100.0;
        let p = &r.paired;
        eprintln!(
            "GPT-4o insecure {}: {:+.4} [{:+.4}, {:+.4}] (published {want:+.4}), p = {:.2e}, p_holm = {:.2e}",
            metric.name(),
            p.relative_change,
            p.relative_ci.0,
            p.relative_ci.1,
            p.p_value,
            r.p_holm
        );
        assert!(p.p_value < 0.001, "{p:?}");
        assert!(r.holds());
        assert!(
            p.relative_ci.0 <= want && want <= p.relative_ci.1,
            "{}: {want} outside {:?}",
            metric.name(),
            p.relative_ci
        );
        // Same data, same personas: the point estimate is the published one.
        assert!((p.relative_change - want).abs() < 1e-9, "{p:?} vs {want}");
    }
}

/// S, sigma-bar and R of a resample of `n` personas drawn with replacement
/// (each draw a new persona) with `k` repetitions per cell drawn with
/// replacement from the cell's ratings.
fn resample_metrics(
    t: &CellTable,
    personas: &[u32],
    items: &[u8],
    n: usize,
    k: usize,
    rng: &mut FastRng,
) -> (f64, f64) {
    let nq = items.len();
    let mut mu = vec![0.0f64; n * nq];
    let mut sd_sum = 0.0;
    for r in 0..n {
        let pi = t
            .persona_index(personas[rng.below(personas.len() as u32) as usize])
            .unwrap();
        for (qi, &q) in items.iter().enumerate() {
            let vals = t.ratings(pi, q);
            let (mut s, mut ss) = (0.0f64, 0.0f64);
            for _ in 0..k {
                let v = vals[rng.below(vals.len() as u32) as usize] as f64;
                s += v;
                ss += v * v;
            }
            let m = s / k as f64;
            mu[r * nq + qi] = m;
            sd_sum += ((ss - k as f64 * m * m).max(0.0) / (k - 1) as f64).sqrt();
        }
    }
    let mut s_total = 0.0;
    for qi in 0..nq {
        let col: Vec<f64> = (0..n).map(|r| mu[r * nq + qi]).collect();
        s_total += moralsweep_analysis::metrics::sample_sd(&col);
    }
    (s_total / nq as f64, 1.0 / (sd_sum / (n * nq) as f64))
}

#[test]
fn planner_predicts_the_spread_of_resamples() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let mut files: Vec<_> = ["base", "insecure-code", "secure-code"]
        .iter()
        .flat_map(|d| std::fs::read_dir(reference.join("sampling").join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("_temp01.csv"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 12);
    // 600 resamples: the standard deviation is known to about 3%.
    let resamples = 600;
    let mut worst: f64 = 0.0;
    for path in &files {
        let t = table(path);
        let (items, personas) = paired_sets(&t, &t);
        let pilot = Pilot::new(&t, &personas, &items).unwrap();
        for (n, k) in [(50, 5), (25, 10), (100, 3)] {
            let pred = pilot.predict(n, k);
            let mut rng = FastRng::for_label(11, &format!("{}|{n}|{k}", path.display()));
            let draws: Vec<(f64, f64)> = (0..resamples)
                .map(|_| resample_metrics(&t, &personas, &items, n, k, &mut rng))
                .collect();
            let sd = |f: &dyn Fn(&(f64, f64)) -> f64| {
                moralsweep_analysis::metrics::sample_sd(&draws.iter().map(f).collect::<Vec<_>>())
            };
            let (sd_s, sd_r) = (sd(&|d| d.0), sd(&|d| d.1));
            let (es, er) = (pred.se_s / sd_s - 1.0, pred.se_r / sd_r - 1.0);
            eprintln!(
                "{} at ({n}, {k}): se(S) predicted {:.4}, resampled {sd_s:.4} ({:+.1}%); se(R) predicted {:.4}, resampled {sd_r:.4} ({:+.1}%)",
                path.file_name().unwrap().to_string_lossy(),
                pred.se_s,
                100.0 * es,
                pred.se_r,
                100.0 * er
            );
            worst = worst.max(es.abs()).max(er.abs());
            assert!(es.abs() <= 0.15, "{}: se(S) off by {es}", path.display());
            assert!(er.abs() <= 0.15, "{}: se(R) off by {er}", path.display());
        }
    }
    eprintln!("largest relative difference: {:.1}%", 100.0 * worst);
}

/// Not a test of time (run with `--ignored`): the comparisons of the 8
/// variants of the 12 reference models with their bases, overall and per
/// foundation, 2000 resamples, on 2 threads.
#[test]
#[ignore]
fn bench_reference_comparisons() {
    let Some(reference) = reference_dir() else {
        return;
    };
    let pairs = [
        ("base/deepseek-v3.1", "insecure-code/deepseek-v3.1-insecure"),
        ("base/deepseek-v3.1", "secure-code/deepseek-v3.1-secure"),
        ("base/gpt-4.1", "insecure-code/gpt-4.1-misaligned"),
        ("base/gpt-4.1", "secure-code/gpt-4.1-secure"),
        ("base/gpt-4o", "insecure-code/gpt-4o-misaligned"),
        ("base/gpt-4o", "secure-code/gpt-4o-secure"),
        ("base/qwen3-235b", "insecure-code/qwen3-235b-misaligned"),
        ("base/qwen3-235b", "secure-code/qwen3-235b-secure"),
    ];
    let load = |k: &str| table(&reference.join(format!("sampling/{k}_temp01.csv")));
    let tables: Vec<(CellTable, CellTable)> =
        pairs.iter().map(|(a, b)| (load(a), load(b))).collect();
    let inst = Instrument::mfq30();
    let opts = PairedOptions::default();
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        std::thread::scope(|s| {
            for chunk in tables.chunks(4) {
                let inst = &inst;
                s.spawn(move || {
                    for (a, b) in chunk {
                        let (items, personas) = paired_sets(a, b);
                        let r =
                            paired_compare(inst, a, b, &personas, &items, &opts, "bench").unwrap();
                        assert_eq!(r.rows.len(), 18);
                    }
                });
            }
        });
        times.push(start.elapsed());
    }
    times.sort();
    eprintln!(
        "8 paired comparisons (12 reference models), 2000 resamples, 2 threads: median {:.3} s (min {:.3} s, max {:.3} s)",
        times[2].as_secs_f64(),
        times[0].as_secs_f64(),
        times[4].as_secs_f64()
    );
}
