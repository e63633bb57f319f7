//! The metrics of rating files whose rows are already in memory: the
//! coordinator hands each unit's rows here as it writes the unit's file,
//! keeps the [`UnitMetrics`] it gets back, and [`assemble`]s them into the
//! [`Report`] that writes the metric files and prints the tables. The same
//! tasks as [`analyze_files`] run on the same rows, so the numbers and files
//! are the ones `analyze` gives for the written files; no file is read,
//! except to name the line of a row the metrics refuse (a file the caller
//! has just written).

use super::*;
use crate::formats::{parse_file_name, FileKind, LogprobFile, RowLimits, SamplingFile};
use std::path::Path;

/// The rows of one rating file, held in memory.
#[derive(Debug, Clone)]
pub enum RatedRows {
    /// A sampling or self file ([`SamplingFile::self_mode`] says which).
    Sampling(SamplingFile),
    Logprobs(LogprobFile),
}

impl RatedRows {
    pub fn len(&self) -> usize {
        match self {
            RatedRows::Sampling(f) => f.rows.len(),
            RatedRows::Logprobs(f) => f.rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A rating file and its rows: where it was written (its name gives the
/// model key and the kind, as for a scanned file) and what it holds.
#[derive(Debug, Clone)]
pub struct RatedFile {
    pub found: FoundFile,
    /// `None` when a row could not be held as the file reader takes it:
    /// the file is read then (and its reader names the row's line).
    pub rows: Option<RatedRows>,
}

impl RatedFile {
    /// The rows written to `path`, a rating file under `dir` (the directory
    /// `analyze` would scan: names in the metric files are relative to it).
    pub fn new(
        dir: &Path,
        path: &Path,
        rows: Option<RatedRows>,
    ) -> Result<RatedFile, AnalyzeError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parsed = parse_file_name(&name).ok_or_else(|| AnalyzeError::Io {
            path: path.to_path_buf(),
            error: std::io::Error::other(
                "not a rating file name (<key>_temp<TT>.csv, <key>_temp<TT>_self.csv or <key>_logprobs.csv)",
            ),
        })?;
        // Sizes only order the work; a row is about 40 bytes of a file.
        let size = rows.as_ref().map_or(0, RatedRows::len) as u64 * 40;
        Ok(RatedFile {
            found: FoundFile {
                path: path.to_path_buf(),
                relative: scan::relative_name(dir, path),
                key: parsed.key,
                kind: parsed.kind,
                size,
            },
            rows,
        })
    }

    fn source(&self) -> Source<'_> {
        Source {
            found: &self.found,
            rows: self.rows.as_ref(),
        }
    }
}

/// The metrics of one rating file, to be [`assemble`]d with the others of
/// a sweep.
#[derive(Debug, Clone)]
pub struct UnitMetrics(Partial);

/// Computes the metrics of one rating file from its rows in memory (a
/// sampling file alone: the files of one model key at several temperatures
/// are aligned together only by [`analyze_files`]).
pub fn unit_metrics(file: &RatedFile, opts: &AnalyzeOptions) -> Result<UnitMetrics, AnalyzeError> {
    check_temperatures(opts)?;
    let source = file.source();
    let task = match &file.found.kind {
        FileKind::Sampling { .. } => Task::Sampling {
            key: &file.found.key,
            files: vec![source],
        },
        FileKind::SelfRatings { .. } => Task::SelfFile(source),
        FileKind::Logprobs => Task::Logprob(source),
    };
    let mut part = Partial::default();
    run_task(&task, opts, &mut part)?;
    Ok(UnitMetrics(part))
}

/// The report of a set of units: their rows in one order, with the
/// comparisons between models (variant deltas and excesses, divergences,
/// trajectories).
pub fn assemble<'a>(
    units: impl IntoIterator<Item = &'a UnitMetrics>,
    opts: &AnalyzeOptions,
) -> Result<Report, AnalyzeError> {
    assemble_partials(units.into_iter().map(|u| u.0.clone()).collect(), opts)
}

/// The rows of `file` if they are in memory and every one is a row the
/// file reader would take under `limits`; `None`: read the file (which
/// names the line of a refused row).
pub(super) fn sampling_in_memory<'a>(
    rows: Option<&'a RatedRows>,
    self_mode: bool,
    limits: &RowLimits,
) -> Option<&'a SamplingFile> {
    match rows {
        Some(RatedRows::Sampling(f))
            if f.self_mode == self_mode && f.rows.iter().all(|r| limits.admits(r)) =>
        {
            Some(f)
        }
        _ => None,
    }
}

/// The rows of a logprob file in memory, if they are that.
pub(super) fn logprobs_in_memory(rows: Option<&RatedRows>) -> Option<&LogprobFile> {
    match rows {
        Some(RatedRows::Logprobs(f)) => Some(f),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{LogprobMeta, LogprobRow, LogprobWriter, RatingRow, SamplingWriter};
    use moralsweep_common::slot::{LogprobRecord, SampleRecord, SlotCoord};
    use moralsweep_common::spec::Mode;

    /// Writes a persona file, a self file and a logprob file the way the
    /// coordinator does, keeping their rows; returns the rows in memory.
    fn write_files(dir: &Path) -> Vec<RatedFile> {
        let mut out = Vec::new();
        for (name, mode) in [
            ("m_temp07.csv", Mode::Persona),
            ("m_temp07_self.csv", Mode::SelfMode),
        ] {
            let path = dir.join(name);
            let mut w = SamplingWriter::create(&path, mode).unwrap();
            let mut rows = Vec::new();
            let personas: Vec<Option<u32>> = match mode {
                Mode::Persona => (0..5).map(Some).collect(),
                _ => vec![None],
            };
            for persona in personas {
                for item in 1..=30u8 {
                    for run in 1..=3u32 {
                        let p = persona.unwrap_or(7);
                        // A -1 now and then, and ratings that move with the persona.
                        let rating = match (p * 31 + item as u32 * 7 + run * 3) % 11 {
                            10 => -1,
                            r => (r % 6) as i8,
                        };
                        let coord = SlotCoord { persona, item, run };
                        let rec = SampleRecord {
                            rating,
                            failures: run % 2,
                            response: format!("{rating}\nbecause, \"so\""),
                            collected_at: "2026-11-29T12:00:00.000000".into(),
                        };
                        w.write_row(coord, &rec).unwrap();
                        rows.push(RatingRow {
                            persona,
                            item,
                            run,
                            rating,
                            failures: rec.failures,
                        });
                    }
                }
            }
            w.finish().unwrap();
            let rows = RatedRows::Sampling(SamplingFile {
                path: path.clone(),
                self_mode: mode == Mode::SelfMode,
                rows,
            });
            out.push(RatedFile::new(dir, &path, Some(rows)).unwrap());
        }
        let path = dir.join("m_logprobs.csv");
        let meta = LogprobMeta {
            model_name: "m".into(),
            temperature: 1.0,
            prompt_mode: "mfq_persona".into(),
        };
        let mut w = LogprobWriter::create(&path, meta).unwrap();
        let mut rows = Vec::new();
        for persona in 0..4u32 {
            for item in 1..=30u8 {
                let coord = SlotCoord {
                    persona: Some(persona),
                    item,
                    run: 1,
                };
                let x =
                    |d: u32| -0.3 - ((persona * 13 + item as u32 * 5 + d * 7) % 17) as f64 / 3.7;
                let mut digits: [Option<f64>; 6] = std::array::from_fn(|d| Some(x(d as u32)));
                // A digit missing from the top list (imputed), and a NaN one.
                digits[(item % 6) as usize] = None;
                if item == 4 {
                    digits[1] = Some(f64::NAN);
                }
                let rec = LogprobRecord {
                    first_token: if item == 9 { "\n".into() } else { "3".into() },
                    first_token_logprob: -0.5,
                    digit_logprobs: digits,
                    raw_top_logprobs_json:
                        r#"[{"token": "3", "logprob": -0.5}, {"token": "x", "logprob": -9.25}]"#
                            .into(),
                    top_logprobs_requested: 20,
                    collected_at: "2026-11-29T12:00:00.000000".into(),
                };
                let line = w.next_line();
                w.write_row(coord, &rec).unwrap();
                rows.push(LogprobRow::of_record(line, coord, &rec).unwrap());
            }
        }
        w.finish().unwrap();
        let rows = RatedRows::Logprobs(LogprobFile {
            path: path.clone(),
            rows,
        });
        out.push(RatedFile::new(dir, &path, Some(rows)).unwrap());
        out
    }

    fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rows_in_memory_give_the_report_and_files_of_reading_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let rated = write_files(&data);
        let opts = AnalyzeOptions {
            bootstrap: 50,
            rerun_bootstrap: 20,
            ..AnalyzeOptions::default()
        };
        let from_files = analyze_dir(&data, &opts).unwrap();
        let units: Vec<UnitMetrics> = rated
            .iter()
            .map(|f| unit_metrics(f, &opts).unwrap())
            .collect();
        let in_memory = assemble(units.iter().rev(), &opts).unwrap();
        assert_eq!(in_memory.overall, from_files.overall);
        assert_eq!(in_memory.curves, from_files.curves);
        assert_eq!(in_memory.self_profiles, from_files.self_profiles);
        assert_eq!(in_memory.dropped, from_files.dropped);
        assert_eq!(in_memory.summary_table(), from_files.summary_table());
        assert!(!in_memory.overall.is_empty() && !in_memory.curves.is_empty());
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        from_files.write(&a).unwrap();
        in_memory.write(&b).unwrap();
        let (fa, fb) = (files_of(&a), files_of(&b));
        assert_eq!(
            fa.len(),
            7,
            "{:?}",
            fa.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        assert_eq!(fa, fb);
        // The rows kept for the logprob file are the rows its reader reads,
        // line numbers included (item 9's first token is a line break).
        let read = crate::formats::read_logprobs(&data.join("m_logprobs.csv")).unwrap();
        match &rated[2].rows {
            Some(RatedRows::Logprobs(f)) => assert_eq!(f.rows, read.rows),
            _ => panic!("logprob rows expected"),
        }
    }

    #[test]
    fn rows_the_reader_would_refuse_are_read_from_the_file_which_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m_temp07.csv");
        std::fs::write(
            &path,
            "persona_id,question_id,run_index,rating,failures,response,collected_at\n0,1,1,9,0,9,t\n",
        )
        .unwrap();
        let rows = RatedRows::Sampling(SamplingFile {
            path: path.clone(),
            self_mode: false,
            rows: vec![RatingRow {
                persona: Some(0),
                item: 1,
                run: 1,
                rating: 9,
                failures: 0,
            }],
        });
        let file = RatedFile::new(dir.path(), &path, Some(rows)).unwrap();
        let opts = AnalyzeOptions {
            instrument: Some(moralsweep_common::Instrument::mfq30()),
            ..AnalyzeOptions::default()
        };
        let e = unit_metrics(&file, &opts).unwrap_err().to_string();
        assert!(
            e.contains("m_temp07.csv") && e.contains("line 2") && e.contains("rating"),
            "{e}"
        );
    }
}
