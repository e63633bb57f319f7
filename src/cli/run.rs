//! `moralsweep run SPEC.toml`: the whole sweep in one process: an embedded
//! store under `<output>/.moralsweep/`, the coordinator's engine and
//! `--workers` workers talking to it directly. Interrupting it (Ctrl-C,
//! SIGTERM, even `kill -9`) loses no recorded answer; running it again
//! resumes where it stopped and never asks a recorded slot again.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::inprocess::{InProcessLink, InProcessPermits};
use anyhow::Context;
use moralsweep_analysis::analyze::Report;
use moralsweep_analysis::formats::{fmt_float, fmt_temperature, is_provider_default};
use moralsweep_common::spec::KeyCheck;
use moralsweep_common::Sweep;
use moralsweep_coordinator::engine::{Engine, EngineConfig, EngineError};
use moralsweep_coordinator::pacing::RateGroups;
use moralsweep_coordinator::store::embedded::EmbeddedStore;
use moralsweep_coordinator::store::Store;
use moralsweep_protocol::{ProgressState, SweepProgress};
use moralsweep_worker::cost::Accounting;
use moralsweep_worker::runtime::{self, WorkerConfig, WorkerStats};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The sweep spec.
    pub spec: PathBuf,
    /// Workers in this process.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Requests in flight per worker.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// The state file (default: `<output>/.moralsweep/state.redb`).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Seconds a lease lasts before its slots go back to the queue.
    #[arg(long, default_value_t = 60.0)]
    pub lease_ttl: f64,
    /// No progress bars or progress lines.
    #[arg(long)]
    pub quiet: bool,
    /// Print the requests, tokens, cost and time at the configured limits,
    /// and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Serve the live view of the sweep (http://ADDR/live) and /metrics
    /// here while it runs, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    pub ui: Option<String>,
    /// A file holding a token the live view then requires (default: none,
    /// so bind --ui to a loopback address).
    #[arg(long, requires = "ui")]
    pub ui_token_file: Option<PathBuf>,
    /// Write no report.html (and figures/) next to the metrics.
    #[arg(long)]
    pub no_report: bool,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.dry_run {
        // Nothing is sent, so no key is needed.
        let sweep = Sweep::load(&args.spec, KeyCheck::Skip)?;
        println!("{}", moralsweep_worker::cost::dry_run_for(&sweep)?);
        return Ok(());
    }
    let sweep = Sweep::load(&args.spec, KeyCheck::Check)?;
    if args.workers == 0 {
        anyhow::bail!("--workers is 0; give at least 1");
    }
    if !(args.lease_ttl > 0.0 && args.lease_ttl.is_finite()) {
        anyhow::bail!("--lease-ttl must be a positive number of seconds");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run_sweep(args, sweep))
}

async fn run_sweep(args: RunArgs, sweep: Sweep) -> anyhow::Result<()> {
    let state = args
        .state
        .clone()
        .unwrap_or_else(|| sweep.output.join(".moralsweep").join("state.redb"));
    let store = EmbeddedStore::open(&state)
        .with_context(|| format!("opening the sweep's state {}", state.display()))?;
    let store: Arc<dyn Store> = Arc::new(store);
    // One process owns this store: leases left by an interrupted run go back
    // to the queue at once instead of at their deadlines.
    for lease in store.leases().await? {
        store.release(&lease.id).await?;
    }
    // Likewise its provider batches: this run's workers take them over at
    // once (to poll them, or find them at the provider; never to submit
    // them again).
    store.claim_batches("", u64::MAX, 0, u32::MAX).await?;
    let rates = Arc::new(RateGroups::new());
    let engine = Engine::new(
        store.clone(),
        rates.clone(),
        EngineConfig {
            lease_ttl: Duration::from_secs_f64(args.lease_ttl),
            reclaim_every: Duration::from_secs(2),
            data_root: sweep.output.clone(),
            metrics: moralsweep_telemetry::metrics::global().clone(),
            one_process: true,
            ..EngineConfig::default()
        },
    );
    // Only this spec's sweep runs here: `submit` creates it, or loads it from
    // the store when an earlier run started it (other sweeps in the same
    // state file stay untouched).
    let name = sweep.spec.name.clone();
    let created = match engine
        .submit(sweep.spec.clone(), sweep.personas.clone(), sweep.output.clone())
        .await
    {
        Ok(c) => c,
        Err(EngineError::AlreadyExists(_)) => anyhow::bail!(
            "{} holds the state of a different sweep named {name:?} (the spec or its personas changed since it started); \
             use another `output` or `name`, or delete {} to start over",
            state.display(),
            state.display()
        ),
        Err(e) => return Err(e.into()),
    };
    let before = engine.snapshot_one(&name)?;
    if !created {
        eprintln!(
            "resuming sweep {name}: {} of {} slots already recorded",
            before.done, before.total
        );
    }
    let _tasks = engine.start();
    // The usage and cost of this process's workers: they share one handle.
    let accounting = Arc::new(Accounting::new());
    let _ui = match &args.ui {
        Some(addr) => {
            let token = match &args.ui_token_file {
                Some(f) => Some(
                    moralsweep_protocol::auth::load_token(Some(f)).context("--ui-token-file")?,
                ),
                None => None,
            };
            if let Some(w) = token
                .as_deref()
                .and_then(moralsweep_protocol::auth::short_token_warning)
            {
                eprintln!("warning: --ui-token-file: {w}");
            }
            const WHOSE: &str = "the token in --ui-token-file";
            let live = crate::cli::live::EngineLive::view(
                engine.clone(),
                Some(accounting.clone()),
                token.clone(),
            )
            .token_called(WHOSE);
            let server = moralsweep_telemetry::spawn_ops_guarded(
                addr,
                engine.config().metrics.clone(),
                || async { true },
                live.router(),
                token,
                (WHOSE, "--ui-token-file FILE"),
                std::future::pending::<()>(),
            )
            .await
            .with_context(|| format!("--ui {addr}"))?;
            if let Some(w) = &server.warning {
                eprintln!("warning: --ui: {w}");
            }
            eprintln!("live view: http://{}/live", server.local_addr);
            Some(server)
        }
        None => None,
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stats = Arc::new(WorkerStats::default());
    let mut workers = Vec::new();
    // Which models refused several samples per request, known to every worker.
    let single_sample = moralsweep_worker::runtime::SingleSampleModels::default();
    for i in 0..args.workers {
        let link = Arc::new(InProcessLink {
            engine: engine.clone(),
        });
        let permits = Arc::new(InProcessPermits {
            rates: rates.clone(),
        });
        let cfg = WorkerConfig {
            name: format!("run-{i}"),
            concurrency: args.concurrency.max(1),
            lease_batch: (args.concurrency as u32 * 2).clamp(8, 256),
            extend_every: Duration::from_secs_f64((args.lease_ttl / 3.0).max(0.05)),
            // Ctrl-C should stop within seconds: requests still running after
            // this are dropped (their slots are asked again on the next run).
            drain_timeout: RUN_DRAIN_TIMEOUT,
            single_sample: single_sample.clone(),
            accounting: accounting.clone(),
            // The engine counts the recorded slots; the workers count the rest.
            metrics: engine.config().metrics.for_inprocess_workers(),
            ..WorkerConfig::default()
        };
        workers.push(tokio::spawn(runtime::run(
            link,
            permits,
            cfg,
            stop_rx.clone(),
            stats.clone(),
        )));
    }

    // Listens for Ctrl-C and SIGTERM for the whole run (a listener that
    // exists only inside the loop's select could miss a signal).
    let (int_tx, mut int_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        super::shutdown_signal().await;
        let _ = int_tx.send(true);
    });
    let mut view = Progress::new(&before, args.quiet);
    let mut changes = engine.subscribe();
    let mut interrupted = false;
    let final_state = loop {
        let p = engine.snapshot_one(&name)?;
        view.update(&p);
        if p.finished() {
            break p;
        }
        tokio::select! {
            _ = int_rx.changed() => {}
            _ = changes.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        interrupted = *int_rx.borrow();
        if interrupted {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = stop_tx.send(true);
    for w in workers {
        match w.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("worker stopped: {e}"),
            Err(e) => tracing::error!("worker task failed: {e}"),
        }
    }
    view.finish();
    if interrupted {
        let p = engine.snapshot_one(&name)?;
        eprintln!(
            "interrupted: {} of {} slots recorded; run the same command again to resume",
            p.done, p.total
        );
        // exit() skips the telemetry guard: send the finished spans first.
        moralsweep_telemetry::flush();
        std::process::exit(130);
    }
    // A write failure's message is a coordinator's (it retries, cancel the
    // sweep): this run ends instead, and its error below names the cause.
    let write_error = engine.write_error(&name);
    let sweep_message = format!("sweep {name}: ");
    for m in &final_state.messages {
        if write_error.is_none() || !m.starts_with(&sweep_message) {
            eprintln!("warning: {m}");
        }
    }
    // The report the finisher wrote the metric files from (no file is read back).
    let report = engine.metrics_report(&name).await.unwrap_or_else(|e| {
        eprintln!("warning: no metrics table: {e:#}");
        None
    });
    print_summary(&final_state, report.as_deref(), &accounting);
    let mut report_written = true;
    if !args.no_report {
        let record = engine.record(&name).ok();
        let cost =
            crate::cli::report::cost_json(accounting.snapshot().into_iter().map(|(model, u)| {
                moralsweep_protocol::UsageEntry {
                    model,
                    requests: u.requests,
                    input_tokens: u.input_tokens,
                    output_tokens: u.output_tokens,
                    rate_limited: u.rate_limited,
                    retries: u.retried_errors,
                    usd: u.cost_usd,
                    ..Default::default()
                }
            }));
        let mut fields = vec![("report_of_run_at", crate::cli::report::now_rfc3339())];
        if let Some(r) = &record {
            fields.push(("created_at", r.created_at.clone()));
            if let Some(f) = &r.finished_at {
                fields.push(("finished_at", f.clone()));
            }
        }
        crate::cli::report::write_provenance(
            &final_state.output,
            &name,
            crate::cli::report::SpecText::read(&args.spec),
            &fields,
            Some(cost),
            None,
        );
        report_written =
            crate::cli::report::write_default(&final_state.output, None, true).is_some();
    }
    // A model that stopped (a refused key, a bad option) leaves the sweep
    // incomplete: say so in the exit status, after the others' results.
    let failed: Vec<&str> = final_state
        .units
        .iter()
        .filter(|u| u.state == ProgressState::Failed)
        .map(|u| u.model.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !failed.is_empty() {
        eprintln!(
            "error: {} of the sweep's models stopped before finishing: {}; the others' files are complete; fix the cause above and run again",
            failed.len(),
            failed.join(", ")
        );
        moralsweep_telemetry::flush();
        std::process::exit(1);
    }
    // Every slot may be recorded while the files are not written (a folder
    // in the way, a full disk): the sweep failed even though no model did.
    if final_state.state == ProgressState::Failed {
        eprintln!(
            "error: sweep {name} failed: its files in {} could not all be written: {}; every answer is recorded in {}, so fix the cause and run the same command again to write them without asking anything again",
            final_state.output.display(),
            write_error.as_deref().unwrap_or("the cause is above"),
            state.display()
        );
        moralsweep_telemetry::flush();
        std::process::exit(1);
    }
    if !report_written {
        moralsweep_telemetry::flush();
        std::process::exit(1);
    }
    Ok(())
}

/// How long requests running at Ctrl-C / SIGTERM may take to finish.
const RUN_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Prints where the files are and the S/R table of the finished models,
/// from the sweep's report.
fn print_summary(p: &SweepProgress, report: Option<&Report>, accounting: &Accounting) {
    println!(
        "sweep {} {}: {} of {} slots",
        p.sweep, p.state, p.done, p.total
    );
    println!("files: {}", p.output.join("data").display());
    let print_rows = |rows: Vec<[String; 5]>, label: &str| {
        println!(
            "{:<32} {:>8} {:>8} {:>8} {:>8}",
            label, "S", "se(S)", "R", "se(R)"
        );
        for r in rows {
            println!(
                "{:<32} {:>8} {:>8} {:>8} {:>8}",
                r[0], r[1], r[2], r[3], r[4]
            );
        }
    };
    let has_persona_mode = p
        .units
        .iter()
        .any(|u| u.mode == moralsweep_common::Mode::Persona);
    let fmt = |x: f64| format!("{x:.3}");
    // model, S, se(S), R, se(R); a model sampled at its provider's default
    // temperature says so.
    let persona: Vec<[String; 5]> = report
        .map(|r| r.overall.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let t = fmt_temperature(r.temperature);
            let m = &r.metrics;
            [
                if is_provider_default(r.temperature) {
                    format!("{} @ {t}", r.model)
                } else {
                    r.model.clone()
                },
                fmt(m.s),
                fmt(m.s_se()),
                fmt(m.r()),
                fmt(m.r_se()),
            ]
        })
        .collect();
    if !persona.is_empty() {
        print_rows(persona, "model");
    } else if has_persona_mode {
        println!(
            "(no persona metrics: no persona-mode model has a persona with a valid rating for every item)"
        );
    }
    // Logprob mode: S(T) and R(T) at the reported temperatures.
    let curves: Vec<[String; 5]> = report
        .map(|r| r.curves.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let p = &c.point;
            [
                format!("{} @ {}", c.model, fmt_float(p.temperature)),
                fmt(p.s),
                fmt(p.s_se),
                fmt(p.r()),
                fmt(p.r_se()),
            ]
        })
        .collect();
    if !curves.is_empty() {
        print_rows(curves, "logprob model @ T");
    }
    if report.is_some_and(|r| !r.overall.is_empty() || !r.curves.is_empty()) {
        println!("{}", moralsweep_analysis::analyze::NAMES_NOTE);
    }
    // Requests, tokens and cost of the calls this process made.
    let usage = accounting.snapshot();
    if usage.values().any(|u| u.requests > 0) {
        print!("{}", moralsweep_worker::cost::usage_table(&usage));
    }
}

/// Progress bars per model on a terminal, plain lines otherwise.
struct Progress {
    bars: Option<(
        indicatif::MultiProgress,
        Vec<(String, indicatif::ProgressBar)>,
    )>,
    quiet: bool,
    last_line: std::time::Instant,
    last_done: u64,
    /// The provider batches' lines last printed.
    last_batches: Vec<String>,
    /// The expected duration, printed once after the first minute.
    eta: super::eta::Eta,
}

impl Progress {
    fn new(p: &SweepProgress, quiet: bool) -> Self {
        let mut bars = None;
        if !quiet && std::io::stderr().is_terminal() {
            let multi = indicatif::MultiProgress::new();
            let style = indicatif::ProgressStyle::with_template(
                "{prefix:<28} [{bar:40}] {pos}/{len} {percent:>3}% {per_sec:>10} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            let mut v = Vec::new();
            for (model, total, done) in per_model(p) {
                let bar = multi.add(indicatif::ProgressBar::new(total));
                bar.set_style(style.clone());
                bar.set_prefix(model.clone());
                bar.set_position(done);
                // Rate and ETA from the slots answered in this run only.
                bar.reset_eta();
                v.push((model, bar));
            }
            bars = Some((multi, v));
        }
        Progress {
            bars,
            quiet,
            last_line: std::time::Instant::now(),
            last_done: p.done,
            last_batches: Vec::new(),
            eta: super::eta::Eta::new(p.done),
        }
    }

    fn update(&mut self, p: &SweepProgress) {
        if self.quiet {
            return;
        }
        if let Some(line) = self.eta.due(p.done, p.total) {
            match &self.bars {
                Some((multi, _)) => {
                    let _ = multi.println(&line);
                }
                None => println!("{line}"),
            }
        }
        match &self.bars {
            Some((_, bars)) => {
                for ((_, total, done), (model, bar)) in per_model(p).into_iter().zip(bars) {
                    bar.set_position(done.min(total));
                    // A batch-mode model: what its provider batch is doing.
                    let of = format!(" of {model} ");
                    if let Some(b) = p.batches.iter().find(|b| b.contains(&of)) {
                        bar.set_message(b.split_once(": ").map_or(b.as_str(), |x| x.1).to_string());
                    }
                    if let Some(u) = p
                        .units
                        .iter()
                        .find(|u| &u.model == model && u.state == ProgressState::Failed)
                    {
                        bar.abandon_with_message(format!("stopped: {}", u.message));
                    } else if done >= total {
                        bar.finish();
                    }
                }
            }
            None => {
                let due = self.last_line.elapsed() >= Duration::from_secs(5) || p.finished();
                if due && (p.done != self.last_done || p.batches != self.last_batches) {
                    let parts: Vec<String> = per_model(p)
                        .into_iter()
                        .map(|(m, t, d)| format!("{m} {d}/{t}"))
                        .collect();
                    println!("progress {}/{}: {}", p.done, p.total, parts.join(", "));
                    for b in &p.batches {
                        println!("  {b}");
                    }
                    self.last_batches = p.batches.clone();
                    self.last_line = std::time::Instant::now();
                    self.last_done = p.done;
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some((multi, _)) = &self.bars {
            let _ = multi.clear();
        }
    }
}

/// (model, total, done) summed over the model's modes, in spec order.
fn per_model(p: &SweepProgress) -> Vec<(String, u64, u64)> {
    let mut v: Vec<(String, u64, u64)> = Vec::new();
    for u in &p.units {
        match v.iter_mut().find(|(m, _, _)| *m == u.model) {
            Some(e) => {
                e.1 += u.total;
                e.2 += u.done;
            }
            None => v.push((u.model.clone(), u.total, u.done)),
        }
    }
    v
}
