//! The files of a check: the answers with their scores (`<key>_em.csv` in
//! a sweep's data folder, one row per answer) and the summaries in the
//! paper's `verification_scores.json` shape (`{"results": {key: summary}}`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::summary::Summary;

/// The answers file of a model: `<key>_em.csv`.
pub fn answers_file_name(key: &str) -> String {
    format!("{key}_em.csv")
}

/// The model key of an answers file name, if it is one.
pub fn answers_file_key(name: &str) -> Option<&str> {
    name.strip_suffix("_em.csv").filter(|k| !k.is_empty())
}

/// The summaries file's name.
pub const VERIFICATION_FILE: &str = "verification_scores.json";

/// One row of an answers file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerRow {
    pub model: String,
    /// 1-8.
    pub question_id: u32,
    /// 1-30.
    pub sample: u32,
    pub answer: String,
    /// The judge's score; empty where it gave none.
    pub alignment: Option<u8>,
    pub coherence: Option<u8>,
    /// The judge's replies as they came.
    pub alignment_reply: String,
    pub coherence_reply: String,
    /// Failed attempts before the answer.
    pub failures: u32,
    pub collected_at: String,
}

/// Why a check file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum EmFileError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EmFileError + '_ {
    move |error| EmFileError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Writes an answers file.
pub fn write_answers(path: &Path, rows: &[AnswerRow]) -> Result<(), EmFileError> {
    let fmt = |message: String| EmFileError::Format {
        path: path.to_path_buf(),
        message,
    };
    let file = moralsweep_userfs::create_file_at(path).map_err(|e| fmt(e.to_string()))?;
    let mut w = csv::Writer::from_writer(file);
    for r in rows {
        w.serialize(r).map_err(|e| fmt(e.to_string()))?;
    }
    let file = w.into_inner().map_err(|e| fmt(e.to_string()))?;
    file.commit().map_err(|e| fmt(e.to_string()))?;
    Ok(())
}

/// Reads an answers file; an error names the file and the line.
pub fn read_answers(path: &Path) -> Result<Vec<AnswerRow>, EmFileError> {
    let file = moralsweep_userfs::open_bounded(path, moralsweep_userfs::RATINGS_LIMIT)
        .map_err(io(path))?;
    let mut r = csv::Reader::from_reader(file);
    let mut out = Vec::new();
    for (i, row) in r.deserialize().enumerate() {
        out.push(row.map_err(|e: csv::Error| EmFileError::Format {
            path: path.to_path_buf(),
            message: format!(
                "line {}: {e}; expected the columns model, question_id, sample, answer, alignment, coherence, alignment_reply, coherence_reply, failures, collected_at",
                i + 2
            ),
        })?);
    }
    Ok(out)
}

#[derive(Serialize, Deserialize)]
struct VerificationDoc {
    results: BTreeMap<String, Summary>,
}

/// Writes summaries in the paper's shape (two-space indented JSON).
pub fn write_verification(
    path: &Path,
    results: &BTreeMap<String, Summary>,
) -> Result<(), EmFileError> {
    let doc = VerificationDoc {
        results: results.clone(),
    };
    let mut text = serde_json::to_string_pretty(&doc).expect("summaries serialise");
    text.push('\n');
    let mut file = moralsweep_userfs::create_file_at(path).map_err(|e| EmFileError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io(path))?;
    file.commit().map_err(|e| EmFileError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(())
}

/// Reads a `verification_scores.json` (ours or a published one).
pub fn read_verification(path: &Path) -> Result<BTreeMap<String, Summary>, EmFileError> {
    let text = moralsweep_userfs::read_to_string_bounded(path, moralsweep_userfs::METRICS_LIMIT)
        .map_err(io(path))?;
    let doc: VerificationDoc = serde_json::from_str(&text).map_err(|e| EmFileError::Format {
        path: path.to_path_buf(),
        message: format!(
            "line {}: {e}; expected {{\"results\": {{\"<model key>\": {{\"avg_alignment\": ..., \"avg_coherence\": ..., \"n_samples\": ...}}}}}}",
            e.line()
        ),
    })?;
    Ok(doc.results)
}

/// The summaries of every answers file (`<key>_em.csv`) in `dir` (not
/// recursive), by model key, with `check`'s misaligned threshold.
pub fn summaries_of_dir(
    dir: &Path,
    check: &moralsweep_common::em::EmCheck,
) -> Result<BTreeMap<String, Summary>, EmFileError> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut files = Vec::new();
    for e in entries {
        let e = e.map_err(io(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(key) = answers_file_key(&name) {
            files.push((key.to_string(), e.path()));
        }
    }
    files.sort();
    for (key, path) in files {
        let rows = read_answers(&path)?;
        let alignment: Vec<Option<u8>> = rows.iter().map(|r| r.alignment).collect();
        let coherence: Vec<Option<u8>> = rows.iter().map(|r| r.coherence).collect();
        out.insert(
            key,
            super::summarize(
                rows.len() as u64,
                &alignment,
                &coherence,
                check.misaligned_below,
            ),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_with_missing_scores() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(answers_file_name("m"));
        let rows = vec![AnswerRow {
            model: "m".into(),
            question_id: 1,
            sample: 2,
            answer: "line one\nline, \"two\"".into(),
            alignment: None,
            coherence: Some(85),
            alignment_reply: "CODE".into(),
            coherence_reply: "85.".into(),
            failures: 0,
            collected_at: "2026-01-01T00:00:00.000000".into(),
        }];
        write_answers(&p, &rows).unwrap();
        assert_eq!(read_answers(&p).unwrap(), rows);
        assert_eq!(answers_file_key("m_em.csv"), Some("m"));
        assert_eq!(answers_file_key("_em.csv"), None);
    }

    #[test]
    fn bad_verification_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(VERIFICATION_FILE);
        std::fs::write(&p, "{\"results\": {\"m\": {\"avg_alignment\": \"x\"}}}").unwrap();
        let e = read_verification(&p).unwrap_err().to_string();
        assert!(
            e.contains("verification_scores.json") && e.contains("line 1"),
            "{e}"
        );
    }
}
