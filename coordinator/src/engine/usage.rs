//! The workers' usage and cost (see `moralsweep_protocol::usage`): kept in
//! the store per worker process and model, summed per model for `results`.

use moralsweep_protocol::usage::{totals, UsageEntry};
use serde::{Deserialize, Serialize};

use super::*;

/// One stored entry, with the creation time of the sweep it was reported
/// for: a late report for a deleted sweep never counts toward a new sweep
/// of the same name.
#[derive(Serialize, Deserialize)]
struct Stored {
    created_at: String,
    #[serde(flatten)]
    entry: UsageEntry,
}

impl Engine {
    /// Keeps a worker process's usage totals (`source` names the process).
    /// An entry for a sweep or model this coordinator does not know, or with
    /// a cost that is not a finite amount, is skipped with a warning: the
    /// slots reported beside it must not be refused for it.
    pub async fn record_usage(&self, source: &str, entries: Vec<UsageEntry>) -> EngineResult<()> {
        for entry in entries {
            let created_at = {
                let st = self.lock();
                st.sweeps
                    .get(&entry.sweep)
                    .filter(|s| s.record.spec.model_or_judge(&entry.model).is_some())
                    .map(|s| s.record.created_at.clone())
            };
            let Some(created_at) = created_at else {
                tracing::debug!(sweep = %entry.sweep, model = %entry.model, "usage of an unknown sweep or model skipped");
                continue;
            };
            if let Some(why) = entry.problem() {
                tracing::warn!(sweep = %entry.sweep, worker = %source, "usage skipped: {why}");
                continue;
            }
            let field = format!("{source}\u{1f}{}", entry.model);
            let (sweep, version) = (entry.sweep.clone(), entry.version);
            let bytes = serde_json::to_vec(&Stored { created_at, entry })
                .map_err(|e| EngineError::InvalidArgument(format!("usage: {e}")))?;
            self.store
                .put_usage(&sweep, &field, version, &bytes)
                .await?;
        }
        Ok(())
    }

    /// What the workers' calls for `sweep` used, per model, in model order
    /// (empty when no worker reported any).
    pub async fn usage(&self, sweep: &str) -> EngineResult<Vec<UsageEntry>> {
        let created_at = self.record(sweep)?.created_at;
        let mut entries = Vec::new();
        for bytes in self.store.usage(sweep).await? {
            match serde_json::from_slice::<Stored>(&bytes) {
                Ok(s) if s.created_at == created_at => entries.push(s.entry),
                Ok(_) => {}
                Err(e) => tracing::warn!(sweep, "a stored usage entry cannot be read: {e}"),
            }
        }
        Ok(totals(&entries))
    }
}
