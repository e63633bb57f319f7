//! A sweep's metrics, one way: a unit's rows go from the store to its
//! rating file and, in the same pass, to the metrics core in memory; each
//! unit's metrics are kept, and assembled into the sweep's [`Report`],
//! which writes the metric files and which `run` prints. The rating files
//! are never read back (reading files is how `analyze` takes existing
//! data). After a restart, a written unit's rows come from the store again.

use moralsweep_analysis::analyze::{RatedFile, Report, UnitMetrics};

use super::*;

/// What the engine keeps of a sweep's metrics (memory only).
#[derive(Debug, Default)]
pub(super) struct SweepMetrics {
    /// The rows of units written since the metrics were last computed,
    /// by unit label; dropped once their metrics are kept.
    rows: HashMap<String, Arc<RatedFile>>,
    /// The metrics of each written unit, by unit label.
    units: HashMap<String, Arc<UnitMetrics>>,
    /// The sweep's last report.
    report: Option<Arc<Report>>,
}

impl Engine {
    /// Keeps the rows of a unit whose file was just written, for its metrics.
    pub(super) fn keep_rows(&self, sweep: &str, key: &UnitKey, rows: RatedFile) {
        if !self.cfg.write_metrics {
            return;
        }
        if let Some(s) = self.lock().sweeps.get_mut(sweep) {
            let label = unit_label(&key.model, key.mode);
            s.metrics.units.remove(&label);
            s.metrics.rows.insert(label, Arc::new(rows));
        }
    }

    /// The metrics of a written unit: kept, or computed from the rows kept
    /// when its file was written, or (after a restart) from the store.
    async fn written_unit_metrics(
        &self,
        record: &SweepRecord,
        key: &UnitKey,
        shape: UnitShape,
    ) -> Result<Arc<UnitMetrics>, FinishError> {
        let sweep = record.name();
        let label = unit_label(&key.model, key.mode);
        let rows = {
            let st = self.lock();
            let m = st.sweeps.get(sweep).map(|s| &s.metrics);
            if let Some(u) = m.and_then(|m| m.units.get(&label)) {
                return Ok(u.clone());
            }
            m.and_then(|m| m.rows.get(&label)).cloned()
        };
        let rows = match rows {
            Some(r) => r,
            None => Arc::new(
                crate::output::written_rows(self.store.as_ref(), record, key, shape, true).await?,
            ),
        };
        let metrics = Arc::new(crate::output::unit_metrics_of(record, rows).await?);
        if let Some(s) = self.lock().sweeps.get_mut(sweep) {
            s.metrics.rows.remove(&label);
            s.metrics.units.insert(label, metrics.clone());
        }
        Ok(metrics)
    }

    /// The metrics of every written unit of `sweep` and of `partial` (the
    /// rows of a cancelled sweep's incomplete units, computed afresh: late
    /// reports can add to them).
    async fn sweep_unit_metrics(
        &self,
        record: &SweepRecord,
        partial: Vec<RatedFile>,
    ) -> Result<Vec<Arc<UnitMetrics>>, FinishError> {
        let written: Vec<(UnitKey, UnitShape)> = {
            let st = self.lock();
            let Some(s) = st.sweeps.get(record.name()) else {
                return Ok(Vec::new());
            };
            // The misalignment check's units have no rating rows (their
            // summaries are written beside the metrics).
            s.units
                .iter()
                .filter(|u| {
                    !u.key.mode.is_em()
                        && record
                            .written
                            .contains(&unit_label(&u.key.model, u.key.mode))
                })
                .map(|u| (u.key.clone(), u.shape))
                .collect()
        };
        let mut out = Vec::new();
        for (key, shape) in &written {
            out.push(self.written_unit_metrics(record, key, *shape).await?);
        }
        for rows in partial {
            out.push(Arc::new(
                crate::output::unit_metrics_of(record, Arc::new(rows)).await?,
            ));
        }
        Ok(out)
    }

    /// Computes the sweep's report from its units' metrics, writes the
    /// metric files and keeps the report.
    pub(super) async fn write_metrics(
        &self,
        sweep: &str,
        partial: Vec<RatedFile>,
    ) -> Result<(), FinishError> {
        let record = self.record(sweep)?;
        let units = self.sweep_unit_metrics(&record, partial).await?;
        let report = crate::output::metrics_report(&record, units).await?;
        if let Some(s) = self.lock().sweeps.get_mut(sweep) {
            s.metrics.report = report.map(Arc::new);
        }
        Ok(())
    }

    /// The sweep's report: the one its metric files were written from, or,
    /// when this process wrote none (a sweep finished before a restart),
    /// assembled from its written units' results. `None` when no unit has
    /// rows, or the engine writes no metrics.
    pub async fn metrics_report(&self, sweep: &str) -> Result<Option<Arc<Report>>, FinishError> {
        if !self.cfg.write_metrics {
            return Ok(None);
        }
        let cached = {
            let st = self.lock();
            let s = st.sweeps.get(sweep).ok_or_else(|| not_found(sweep))?;
            s.metrics.report.clone()
        };
        if cached.is_some() {
            return Ok(cached);
        }
        let record = self.record(sweep)?;
        let units = self.sweep_unit_metrics(&record, Vec::new()).await?;
        if units.is_empty() {
            return Ok(None);
        }
        let report = Arc::new(crate::output::assemble_report(&record, units).await?);
        if let Some(s) = self.lock().sweeps.get_mut(sweep) {
            s.metrics.report = Some(report.clone());
        }
        Ok(Some(report))
    }
}
