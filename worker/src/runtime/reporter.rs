//! The reporter: collects finished slots and reports them in batches,
//! releasing each lease once all its slots are accounted for; a failed
//! report is retried, never dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moralsweep_protocol::SlotReport;
use tokio::sync::mpsc;

use super::{Done, Finished, Link, LinkError, Shared};

/// Collects finished slots and reports them in batches; a lease whose slots
/// are all accounted for is released in the same call.
pub(super) async fn reporter<L: Link>(
    shared: Arc<Shared<L>>,
    mut rx: mpsc::UnboundedReceiver<Done>,
    held: Arc<Mutex<HashMap<String, usize>>>,
    outstanding: Arc<AtomicU64>,
    progress: Arc<tokio::sync::Notify>,
) {
    let cfg = &shared.cfg;
    let mut batch: Vec<SlotReport> = Vec::new();
    let mut release: Vec<String> = Vec::new();
    // The trace the batch's report joins: its first traced slot's.
    let mut trace: Option<String> = None;
    let mut closed = false;
    while !closed || !batch.is_empty() || !release.is_empty() {
        if !closed {
            let deadline = tokio::time::sleep(cfg.report_every);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    d = rx.recv() => match d {
                        Some(d) => {
                            account(&held, &mut release, &d.lease_id);
                            outstanding.fetch_sub(1, Ordering::AcqRel);
                            if trace.is_none() {
                                trace = d.traceparent;
                            }
                            match d.finished {
                                Finished::Report(r) => batch.push(*r),
                                Finished::Abandoned => {
                                    shared.stats.abandoned.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            progress.notify_waiters();
                            if batch.len() >= cfg.report_batch {
                                break;
                            }
                        }
                        None => {
                            closed = true;
                            break;
                        }
                    },
                    _ = &mut deadline => break,
                }
            }
        }
        if batch.is_empty() && release.is_empty() {
            continue;
        }
        // Send; on failure keep everything and try again (never drop a result).
        let mut backoff = Duration::from_millis(100);
        loop {
            match shared
                .link
                .report(&cfg.name, batch.clone(), release.clone(), trace.clone())
                .await
            {
                Ok(_) => {
                    shared
                        .stats
                        .reported
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    batch.clear();
                    release.clear();
                    trace = None;
                    break;
                }
                Err(LinkError::Unavailable(m)) => {
                    tracing::warn!(worker = %cfg.name, "reporting failed (will retry): {m}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(worker = %cfg.name, "the coordinator refused a report; dropping it: {e}");
                    batch.clear();
                    release.clear();
                    trace = None;
                    break;
                }
            }
        }
    }
}

fn account(held: &Mutex<HashMap<String, usize>>, release: &mut Vec<String>, lease_id: &str) {
    let mut h = held.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = h.get_mut(lease_id) {
        *n -= 1;
        if *n == 0 {
            h.remove(lease_id);
            release.push(lease_id.to_string());
        }
    }
}
