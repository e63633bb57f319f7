//! The workers the engine has seen, and when each last asked for a lease:
//! the engine notes them on every lease, the ops gauges count the recent
//! ones (`observe.rs`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Workers and when they last asked for a lease.
static WORKERS: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);

/// Notes that `worker` asked for work (called by the engine on every lease).
pub fn worker_seen(worker: &str) {
    let mut w = WORKERS.lock().unwrap_or_else(|e| e.into_inner());
    let map = w.get_or_insert_with(HashMap::new);
    match map.get_mut(worker) {
        Some(t) => *t = Instant::now(),
        None => {
            map.insert(worker.to_string(), Instant::now());
        }
    }
}

/// Workers that asked for a lease within `window`; older ones are forgotten.
pub fn workers_active(window: Duration) -> usize {
    let mut w = WORKERS.lock().unwrap_or_else(|e| e.into_inner());
    let map = w.get_or_insert_with(HashMap::new);
    map.retain(|_, t| t.elapsed() <= window);
    map.len()
}
