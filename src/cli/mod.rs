//! Argument structs and thin entry points of the subcommands.

pub mod analyze;
pub mod cluster;
pub mod live;
pub mod models;
pub mod report;
pub mod results_dir;
pub mod run;
pub mod sim;

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let term = async {
        #[cfg(unix)]
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
