//! The extender: keeps the held leases alive while their slots run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Link, Shared};

/// Keeps the held leases alive.
pub(super) async fn extender<L: Link>(
    shared: Arc<Shared<L>>,
    held: Arc<Mutex<HashMap<String, usize>>>,
) {
    let mut tick = tokio::time::interval(shared.cfg.extend_every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let ids: Vec<String> = held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        if ids.is_empty() {
            continue;
        }
        match shared.link.extend(ids).await {
            Ok(lost) if !lost.is_empty() => {
                tracing::info!(
                    worker = %shared.cfg.name,
                    leases = lost.len(),
                    "leases expired before they were extended; their results are still reported"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(worker = %shared.cfg.name, "extending leases failed: {e}"),
        }
    }
}
