//! `moralsweep`: one binary, one subcommand per role. `main` only parses the
//! arguments and dispatches into the crates; each subcommand's arguments live
//! in its own module under `cli/`.

use clap::{Parser, Subcommand};

mod cli;

/// Measure moral susceptibility (S) and robustness (R) of language models
/// under persona role-play, from one laptop to a Kubernetes cluster.
#[derive(Parser)]
#[command(name = "moralsweep", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Fetch a finished sweep's data and metrics.
    Results(cli::cluster::ResultsArgs),
    /// Compute the metrics from existing rating files (the papers' formats).
    Analyze(cli::analyze::AnalyzeArgs),
    /// The provider simulator: speaks the providers' HTTP APIs for tests and rehearsals.
    Sim(cli::sim::SimArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => cli::run::run(a),
        Command::Coordinator(a) => cli::cluster::coordinator(a),
        Command::Worker(a) => cli::cluster::worker(a),
        Command::Submit(a) => cli::cluster::submit(a),
        Command::Status(a) => cli::cluster::status(a),
        Command::Results(a) => cli::cluster::results(a),
        Command::Analyze(a) => cli::analyze::analyze(a),
        Command::Sim(a) => cli::sim::sim(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
