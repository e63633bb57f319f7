//! `moralsweep`: one binary, one subcommand per role. `main` only parses the
//! arguments and dispatches into the crates; each subcommand's arguments live
//! in its own module under `cli/`.
//!
//! Layer: the top. It may depend on every workspace crate and is the only
//! crate that depends on both `moralsweep-coordinator` and
//! `moralsweep-worker`: the in-process link of `run` (`inprocess`) joins
//! them here. It owns the process-level handles (the telemetry registry,
//! the cost accounting of `run`'s workers) and hands them to the crates.

use clap::{Parser, Subcommand};

mod cli;
mod inprocess;

/// Measure moral susceptibility (S) and robustness (R) of language models
/// under persona role-play, from one laptop to a Kubernetes cluster.
#[derive(Parser)]
#[command(name = "moralsweep", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    telemetry: moralsweep_telemetry::TelemetryArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole sweep in one process (embedded store); resumable by running it again.
    Run(cli::run::RunArgs),
    /// The cluster coordinator (gRPC server backed by Redis).
    Coordinator(cli::cluster::CoordinatorArgs),
    /// One worker of the pool.
    Worker(cli::cluster::WorkerArgs),
    /// Submit a sweep to a running coordinator.
    Submit(cli::cluster::SubmitArgs),
    /// Show the progress of sweeps.
    Status(cli::cluster::StatusArgs),
    /// Fetch a finished (or cancelled) sweep's data and metrics.
    Results(cli::cluster::ResultsArgs),
    /// Stop a sweep, keeping what it recorded (`results` fetches it).
    Cancel(cli::cluster::CancelArgs),
    /// Remove a done or cancelled sweep from the coordinator.
    Delete(cli::cluster::DeleteArgs),
    /// Compute the metrics from existing rating files (the papers' formats).
    Analyze(cli::analyze::AnalyzeArgs),
    /// Paired comparison of two rating files (B against A): changes of S, R and sigma-bar with intervals and p-values.
    Compare(cli::compare::CompareArgs),
    /// Plan a sweep: personas and repetitions needed to detect a change, from a pilot, with costs.
    Plan(cli::plan::PlanArgs),
    /// The papers' figures and tables as one offline HTML file (plus SVG/PNG figures).
    Report(cli::report::ReportArgs),
    /// The model catalog: known models, their prices and capabilities.
    Models(cli::models::ModelsArgs),
    /// The provider simulator: speaks the providers' HTTP APIs for tests and rehearsals.
    Sim(cli::sim::SimArgs),
}

/// Caps glibc's malloc at two arenas (pools of freed memory), before any
/// thread starts. By default every thread that allocates gets an arena of
/// its own, up to eight per core, and each keeps the memory freed into it:
/// a local-model sweep, whose prompts run on whichever of dozens of
/// blocking-pool threads, held about 370 MB in them. Two arenas serve two
/// cores; the local model serialises its computation anyway. A
/// `MALLOC_ARENA_MAX` in the environment (glibc's own setting) wins.
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called first
        // thing in main, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

fn main() -> std::process::ExitCode {
    cap_malloc_arenas();
    let cli = Cli::parse();
    // Logs, traces (when an OTEL_EXPORTER_OTLP_* endpoint is set), metrics
    // and secret redaction, per role; the guard flushes spans at the end.
    let (role, default_filter) = match &cli.command {
        Command::Run(_) => ("run", "warn"),
        Command::Coordinator(_) => ("coordinator", "info"),
        Command::Worker(_) => ("worker", "info"),
        Command::Sim(_) => ("sim", "warn"),
        Command::Submit(_)
        | Command::Status(_)
        | Command::Results(_)
        | Command::Cancel(_)
        | Command::Delete(_) => ("client", "warn"),
        Command::Analyze(_) | Command::Compare(_) | Command::Plan(_) => ("analyze", "warn"),
        Command::Report(_) => ("report", "warn"),
        Command::Models(_) => ("client", "warn"),
    };
    let telemetry = match cli.telemetry.options().and_then(|mut o| {
        o.default_log_filter = default_filter.to_string();
        moralsweep_telemetry::init(role, o)
    }) {
        Ok(guard) => Some(guard),
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Run(a) => cli::run::run(a),
        Command::Coordinator(a) => cli::cluster::coordinator(a),
        Command::Worker(a) => cli::cluster::worker(a),
        Command::Submit(a) => cli::cluster::submit(a),
        Command::Status(a) => cli::cluster::status(a),
        Command::Results(a) => cli::cluster::results(a),
        Command::Cancel(a) => cli::cluster::cancel(a),
        Command::Delete(a) => cli::cluster::delete(a),
        Command::Analyze(a) => cli::analyze::analyze(a),
        Command::Compare(a) => cli::compare::compare(a),
        Command::Plan(a) => cli::plan::plan(a),
        Command::Report(a) => cli::report::report(a),
        Command::Sim(a) => cli::sim::sim(a),
        Command::Models(a) => cli::models::models(a),
    };
    drop(telemetry);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("error: {}", moralsweep_telemetry::redact::redact(&msg));
            std::process::ExitCode::FAILURE
        }
    }
}
