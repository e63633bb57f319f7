//! Benchmark of `analyze` on the papers' 12 reference models with the
//! default 2000 persona / 400 rerun bootstrap draws.
//!
//! ```text
//! cargo bench -p moralsweep-common --bench analyze              # timings
//! cargo bench -p moralsweep-common --bench analyze -- --out DIR # also write the metric files
//! cargo bench -p moralsweep-common --bench analyze -- --threads 1
//! ```
//!
//! It times the whole `analyze_dir` (scan, parse, cell tables, point
//! estimates, both bootstraps, self profiles, deltas) and, separately, its
//! phases on one thread, to show where the time goes. Peak memory and CPU
//! time are measured on the release binary instead:
//! `/usr/bin/time -v target/release/moralsweep analyze ../shared/reference/sampling --out /tmp/m --models ../shared/reference/models.toml`
//! (or `perf stat -e task-clock -r 5 ...` for the CPU time).
//!
//! Figures on the 2-core development machine (the papers' Python pipeline:
//! about 15 s and 117 MB for the same work): 0.09-0.11 s of CPU in all
//! (`perf stat`: 110 ms task-clock), 0.08 s wall on a quiet machine and
//! 0.14-0.2 s while other builds ran, 8-10 MB peak resident memory. Of the
//! CPU time (`perf record`, one thread): persona bootstrap ~27 %, rerun
//! bootstrap ~28 %, CSV parsing ~25 %, cell tables, allocation and the
//! rest ~20 %.

use std::time::{Duration, Instant};

use moralsweep_analysis::analyze::{analyze_dir, scan_dir, AnalyzeOptions, ModelsMap};
use moralsweep_analysis::formats::{read_sampling, FileKind};
use moralsweep_analysis::metrics::{sampled_metrics, BootstrapOptions, CellTable};
use moralsweep_testsupport::reference::reference_dir;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let Some(reference) = reference_dir() else {
        return;
    };
    let threads: usize = arg("--threads").and_then(|t| t.parse().ok()).unwrap_or(0);
    // `cargo bench` passes --bench; `cargo test --all-targets` does not, and
    // then one run is a smoke test, not a measurement.
    let measuring = args.iter().any(|a| a == "--bench");
    let iterations: usize = arg("--iterations")
        .and_then(|t| t.parse().ok())
        .unwrap_or(if measuring { 10 } else { 1 });
    let dir = reference.join("sampling");
    let opts = AnalyzeOptions {
        models: ModelsMap::load(&reference.join("models.toml")).expect("models.toml"),
        threads,
        ..AnalyzeOptions::default()
    };

    // Warm the page cache and check the result once.
    let report = analyze_dir(&dir, &opts).expect("analyze");
    assert_eq!(report.overall.len(), 12);
    if let Some(out) = arg("--out") {
        report.write(std::path::Path::new(&out)).expect("write");
        print!("{}", report.summary_table());
    }

    let mut times = Vec::new();
    for _ in 0..iterations {
        let t = Instant::now();
        let r = analyze_dir(&dir, &opts).expect("analyze");
        times.push(t.elapsed());
        std::hint::black_box(r);
    }
    let threads_used = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    };
    println!(
        "analyze_dir, 12 models, 2000/400 draws, {threads_used} thread(s): median {:.1} ms, min {:.1} ms over {iterations} runs",
        median(times.clone()).as_secs_f64() * 1e3,
        times.iter().min().unwrap().as_secs_f64() * 1e3
    );

    if !measuring {
        return;
    }

    // Phases, single-threaded, summed over the 12 rating files.
    let files = scan_dir(&dir).expect("scan");
    let (mut parse, mut table, mut point, mut persona, mut rerun) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    for f in files
        .iter()
        .filter(|f| matches!(f.kind, FileKind::Sampling { .. }))
    {
        let t = Instant::now();
        let data = read_sampling(&f.path, false).expect("read");
        parse += t.elapsed();
        let t = Instant::now();
        let cells = CellTable::from_rows(
            data.rows
                .iter()
                .map(|r| (r.persona.unwrap_or(0), r.item, r.rating)),
        );
        let items = cells.items();
        let kept = cells.kept_personas(&items);
        table += t.elapsed();
        let run = |pd: u32, rd: u32| {
            let t = Instant::now();
            let o = BootstrapOptions {
                persona_draws: pd,
                rerun_draws: rd,
                seed: 1,
            };
            std::hint::black_box(sampled_metrics(&cells, &kept, &items, &o, "bench").unwrap());
            t.elapsed()
        };
        let p0 = run(0, 0);
        point += p0;
        persona += run(2000, 0).saturating_sub(p0);
        rerun += run(0, 400).saturating_sub(p0);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "one thread, 12 rating files: parse {:.1} ms, cell tables {:.1} ms, point estimates {:.1} ms, persona bootstrap {:.1} ms, rerun bootstrap {:.1} ms",
        ms(parse),
        ms(table),
        ms(point),
        ms(persona),
        ms(rerun)
    );
}
