//! Argument structs and thin entry points of the subcommands.

pub mod analyze;
pub mod cluster;
pub mod compare;
mod eta;
pub mod live;
pub mod models;
pub mod plan;
pub mod report;
pub mod results_dir;
pub mod run;
pub mod sim;

/// Resolves on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    shutdown_listener().await
}

/// Listens for Ctrl-C and SIGTERM from now on (the handlers are installed
/// before this returns, so a signal sent right after, say once a child
/// printed that it is ready, is caught) and returns what ends on the first.
pub(crate) fn shutdown_listener() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let streams = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        if let (Some(mut term), Some(mut int)) = streams {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
