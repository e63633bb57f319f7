//! `analysis.json`: what an analysis read and how, written beside the metric
//! files (by `moralsweep analyze` and by a sweep's metrics step). It records
//! where the rating files are (so `moralsweep report` finds the failure
//! counts without `--data`), each rating file's SHA-256 and size, and the
//! seed and bootstrap sizes the standard errors were drawn with.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{scan_dir, AnalyzeError, AnalyzeOptions};

/// The file's name, beside the metric files.
pub const ANALYSIS_FILE: &str = "analysis.json";

/// The largest `analysis.json` read back (a record of a million rating files
/// stays far below it).
pub const MAX_ANALYSIS_BYTES: u64 = 256 * 1024 * 1024;

/// One rating file an analysis read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatingSource {
    /// Relative to [`AnalysisRecord::data_dir`], with `/` separators.
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

/// What an analysis read and how (`analysis.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisRecord {
    pub tool: String,
    pub tool_version: String,
    /// The directory of the rating files, absolute when it could be resolved.
    pub data_dir: PathBuf,
    /// Seed of every bootstrap.
    pub seed: u64,
    /// Persona bootstrap draws.
    pub bootstrap: u32,
    /// Rerun bootstrap draws.
    pub rerun_bootstrap: u32,
    /// Temperatures of the logprob curves.
    pub logprob_temperatures: Vec<f64>,
    pub rating_files: Vec<RatingSource>,
}

/// The SHA-256 of the file at `path`, read in blocks (no whole-file buffer).
fn sha256_of(path: &Path) -> Result<(String, u64), AnalyzeError> {
    let io = |error| AnalyzeError::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut f =
        moralsweep_userfs::open_bounded(path, moralsweep_userfs::RATINGS_LIMIT).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), total))
}

impl AnalysisRecord {
    /// The record of an analysis of the rating files under `data_dir` with
    /// `opts`: hashes every rating file the scan finds.
    pub fn of_dir(data_dir: &Path, opts: &AnalyzeOptions) -> Result<AnalysisRecord, AnalyzeError> {
        let files = scan_dir(data_dir)?;
        let mut rating_files = Vec::with_capacity(files.len());
        for f in files {
            let (sha256, bytes) = sha256_of(&f.path)?;
            rating_files.push(RatingSource {
                file: f.relative,
                bytes,
                sha256,
            });
        }
        rating_files.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(AnalysisRecord {
            tool: "moralsweep".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            data_dir: std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf()),
            seed: opts.seed,
            bootstrap: opts.bootstrap,
            rerun_bootstrap: opts.rerun_bootstrap,
            logprob_temperatures: opts.temperatures.clone(),
            rating_files,
        })
    }

    /// Writes `<metrics_dir>/analysis.json` (atomically, through the one
    /// writer of a user's folder); returns its path.
    pub fn write(&self, metrics_dir: &Path) -> Result<PathBuf, AnalyzeError> {
        let path = metrics_dir.join(ANALYSIS_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| AnalyzeError::Io {
            path: path.clone(),
            error: std::io::Error::other(e.to_string()),
        })?;
        moralsweep_userfs::OutDir::create(metrics_dir)?
            .write(ANALYSIS_FILE, format!("{text}\n").as_bytes())?;
        Ok(path)
    }

    /// Reads `<metrics_dir>/analysis.json`; `Ok(None)` when there is none.
    pub fn read(metrics_dir: &Path) -> Result<Option<AnalysisRecord>, AnalyzeError> {
        let path = metrics_dir.join(ANALYSIS_FILE);
        let io = |error| AnalyzeError::Io {
            path: path.clone(),
            error,
        };
        let text = match moralsweep_userfs::read_to_string_bounded(&path, MAX_ANALYSIS_BYTES) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            io(std::io::Error::other(format!(
                "line {}: {e}; expected the JSON object `moralsweep analyze` writes (tool, data_dir, seed, bootstrap, rerun_bootstrap, rating_files)",
                e.line()
            )))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_hashes_seed_and_bootstraps_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let text = "persona_id,question_id,run_index,rating,failures\n0,1,0,3,0\n";
        std::fs::write(data.join("m_temp01.csv"), text).unwrap();
        let opts = AnalyzeOptions {
            seed: 7,
            bootstrap: 30,
            rerun_bootstrap: 11,
            ..AnalyzeOptions::default()
        };
        let rec = AnalysisRecord::of_dir(&data, &opts).unwrap();
        assert_eq!((rec.seed, rec.bootstrap, rec.rerun_bootstrap), (7, 30, 11));
        assert_eq!(rec.rating_files.len(), 1);
        assert_eq!(rec.rating_files[0].file, "m_temp01.csv");
        assert_eq!(rec.rating_files[0].bytes, text.len() as u64);
        assert_eq!(
            rec.rating_files[0].sha256,
            hex::encode(Sha256::digest(text.as_bytes()))
        );
        assert!(rec.data_dir.is_absolute());
        let out = dir.path().join("metrics");
        std::fs::create_dir_all(&out).unwrap();
        rec.write(&out).unwrap();
        assert_eq!(AnalysisRecord::read(&out).unwrap(), Some(rec));
        assert_eq!(AnalysisRecord::read(&data).unwrap(), None);
        std::fs::write(out.join(ANALYSIS_FILE), "{\"tool\": 1}").unwrap();
        let e = AnalysisRecord::read(&out).unwrap_err().to_string();
        assert!(e.contains("analysis.json") && e.contains("line 1"), "{e}");
    }
}
