//! Logprob files: one row per (persona, item) with the first token's digit
//! logprobs.

use std::path::{Path, PathBuf};

use moralsweep_common::instrument::{ITEMS, ITEM_COUNT};
use moralsweep_common::slot::{LogprobRecord, SlotCoord};

use super::{csv_error, fmt_float, parse_int, AtomicCsv, FormatError};

/// Columns of a logprob file, in the papers' order. Only `persona_id`,
/// `question_id`, the six `digit_<d>_logprob` and `raw_top_logprobs_json`
/// are read; the others are descriptive.
pub const LOGPROB_COLUMNS: [&str; 19] = [
    "persona_id",
    "question_id",
    "question_type",
    "foundation",
    "model_name",
    "temperature",
    "top_logprobs_requested",
    "prompt_mode",
    "first_token",
    "first_token_logprob",
    "digit_0_logprob",
    "digit_1_logprob",
    "digit_2_logprob",
    "digit_3_logprob",
    "digit_4_logprob",
    "digit_5_logprob",
    "missing_digits",
    "raw_top_logprobs_json",
    "collected_at",
];

/// One row of a logprob file as the metrics need it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogprobRow {
    pub line: u64,
    pub persona: u32,
    pub item: u8,
    /// The recorded digit logprobs, `None` where a digit was not returned.
    pub digit_logprobs: [Option<f64>; 6],
    /// The digit logprobs with every missing digit imputed as the smallest
    /// logprob of the returned top list (METHOD.md, logprob mode).
    pub imputed: [f64; 6],
}

impl LogprobRow {
    /// A row from its digit logprobs and its `raw_top_logprobs_json`, with
    /// every missing digit imputed; the message says why it cannot be.
    pub(crate) fn new(
        line: u64,
        persona: u32,
        item: u8,
        digit_logprobs: [Option<f64>; 6],
        raw_top_logprobs_json: &str,
    ) -> Result<LogprobRow, String> {
        let fallback = min_top_logprob(raw_top_logprobs_json)?;
        let mut imputed = [0.0; 6];
        for d in 0..6 {
            imputed[d] = match (digit_logprobs[d], fallback) {
                (Some(x), _) => x,
                (None, Some(f)) => f,
                (None, None) => {
                    return Err(format!("digit {d} has no logprob and `raw_top_logprobs_json` lists no logprob to impute it from"))
                }
            };
        }
        Ok(LogprobRow {
            line,
            persona,
            item,
            digit_logprobs,
            imputed,
        })
    }

    /// The row a logprob file holds for a recorded slot, as
    /// [`read_logprobs`] reads it back from the line `line` that
    /// [`LogprobWriter`] wrote it on (a NaN digit is written `nan` and read
    /// as missing); `None` where the reader would refuse the row (no
    /// persona, an item id outside 1-30, a digit that cannot be imputed).
    pub fn of_record(line: u64, coord: SlotCoord, rec: &LogprobRecord) -> Option<LogprobRow> {
        let item = coord.item;
        if !(1..=ITEM_COUNT as i64).contains(&(item as i64)) {
            return None;
        }
        let digits = rec.digit_logprobs.map(|d| d.filter(|x| !x.is_nan()));
        LogprobRow::new(
            line,
            coord.persona?,
            item,
            digits,
            &rec.raw_top_logprobs_json,
        )
        .ok()
    }
}

/// The rows of one logprob file, in file order.
#[derive(Debug, Clone)]
pub struct LogprobFile {
    pub path: PathBuf,
    pub rows: Vec<LogprobRow>,
}

fn parse_opt_float(v: &[u8]) -> Result<Option<f64>, ()> {
    let s = std::str::from_utf8(v).map_err(|_| ())?.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let x: f64 = s.parse().map_err(|_| ())?;
    if x.is_nan() {
        Ok(None)
    } else {
        Ok(Some(x))
    }
}

/// The smallest logprob in a `raw_top_logprobs_json` list of
/// `{"token": .., "logprob": ..}` objects; `None` for an empty list.
fn min_top_logprob(json: &str) -> Result<Option<f64>, String> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| format!("`raw_top_logprobs_json` is not JSON: {e}"))?;
    let list = value.as_array().ok_or_else(|| {
        "`raw_top_logprobs_json` must be a JSON list of {\"token\", \"logprob\"} objects"
            .to_string()
    })?;
    let mut min: Option<f64> = None;
    for entry in list {
        let lp = entry.get("logprob").and_then(|v| match v {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        });
        if let Some(lp) = lp.filter(|x: &f64| !x.is_nan()) {
            min = Some(min.map_or(lp, |m: f64| m.min(lp)));
        }
    }
    Ok(min)
}

/// Reads a logprob file and imputes missing digits.
pub fn read_logprobs(path: &Path) -> Result<LogprobFile, FormatError> {
    let file = moralsweep_userfs::open_bounded(path, moralsweep_userfs::RATINGS_LIMIT)
        .map_err(|e| FormatError::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(file);
    let row_err = |line: u64, message: String| FormatError::Row {
        path: path.to_path_buf(),
        line,
        message,
    };
    let csv_err = |e: csv::Error| csv_error(path, e);
    let headers = reader.headers().map_err(csv_err)?.clone();
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        return Err(FormatError::Invalid {
            path: path.to_path_buf(),
            message: "the file is empty; expected a header row".into(),
        });
    }
    let find = |name: &'static str| {
        headers
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}').trim() == name)
            .ok_or_else(|| FormatError::MissingColumn {
                path: path.to_path_buf(),
                column: name,
                kind: "logprob",
                needed: LOGPROB_COLUMNS.join(","),
            })
    };
    let c_persona = find("persona_id")?;
    let c_question = find("question_id")?;
    let c_digits = [
        find("digit_0_logprob")?,
        find("digit_1_logprob")?,
        find("digit_2_logprob")?,
        find("digit_3_logprob")?,
        find("digit_4_logprob")?,
        find("digit_5_logprob")?,
    ];
    let c_raw = find("raw_top_logprobs_json")?;
    let mut rows = Vec::new();
    let mut rec = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_err(e)),
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.len() == 1 && rec[0].is_empty() {
            continue;
        }
        let field = |i: usize| rec.get(i).unwrap_or("");
        let persona = match parse_int(field(c_persona).as_bytes()) {
            Some(p) if (0..=u32::MAX as i64).contains(&p) => p as u32,
            _ => {
                return Err(row_err(
                    line,
                    format!(
                        "`persona_id` is {:?}; expected a non-negative integer",
                        field(c_persona)
                    ),
                ))
            }
        };
        let item = match parse_int(field(c_question).as_bytes()) {
            Some(q) if (1..=ITEM_COUNT as i64).contains(&q) => q as u8,
            _ => {
                return Err(row_err(
                    line,
                    format!(
                        "`question_id` is {:?}; expected an MFQ-30 item id 1-30",
                        field(c_question)
                    ),
                ))
            }
        };
        let mut digit_logprobs = [None; 6];
        for (d, &c) in c_digits.iter().enumerate() {
            digit_logprobs[d] = parse_opt_float(field(c).as_bytes()).map_err(|_| {
                row_err(
                    line,
                    format!(
                        "`digit_{d}_logprob` is {:?}; expected a number or nothing",
                        field(c)
                    ),
                )
            })?;
        }
        rows.push(
            LogprobRow::new(line, persona, item, digit_logprobs, field(c_raw))
                .map_err(|m| row_err(line, m))?,
        );
    }
    Ok(LogprobFile {
        path: path.to_path_buf(),
        rows,
    })
}

/// The descriptive columns shared by every row of one logprob file.
#[derive(Debug, Clone, PartialEq)]
pub struct LogprobMeta {
    /// `model_name`: the model key.
    pub model_name: String,
    /// `temperature` of the requests (the papers write `1.0`).
    pub temperature: f64,
    /// `prompt_mode`: `mfq_persona` (or `mfq_self` for rows without persona).
    pub prompt_mode: String,
}

impl LogprobMeta {
    /// How many lines the row of `rec` takes in a file with these columns
    /// (a quoted field's line breaks count, as a reader numbers lines).
    pub fn lines_of(&self, rec: &LogprobRecord) -> u64 {
        let breaks = |s: &str| s.matches('\n').count() as u64;
        1 + breaks(&self.model_name)
            + breaks(&self.prompt_mode)
            + breaks(&rec.first_token)
            + breaks(&rec.raw_top_logprobs_json)
            + breaks(&rec.collected_at)
    }
}

/// Writes a logprob file atomically (temporary file, then rename on
/// [`LogprobWriter::finish`]).
pub struct LogprobWriter {
    meta: LogprobMeta,
    temperature: String,
    file: AtomicCsv,
    /// The line the next row starts on (the header is line 1).
    line: u64,
}

impl LogprobWriter {
    pub fn create(path: &Path, meta: LogprobMeta) -> Result<LogprobWriter, FormatError> {
        Ok(LogprobWriter {
            temperature: fmt_float(meta.temperature),
            meta,
            file: AtomicCsv::create(path, &LOGPROB_COLUMNS)?,
            line: 2,
        })
    }

    /// The line the next row starts on, as a reader numbers it (a quoted
    /// field's line breaks count).
    pub fn next_line(&self) -> u64 {
        self.line
    }

    /// Appends the row of one (persona, item) slot.
    pub fn write_row(&mut self, coord: SlotCoord, rec: &LogprobRecord) -> Result<(), FormatError> {
        let item = ITEMS
            .get((coord.item as usize).wrapping_sub(1))
            .ok_or_else(|| FormatError::Invalid {
                path: self.file.path().to_path_buf(),
                message: format!("item {} is not an MFQ-30 item id 1-30", coord.item),
            })?;
        let persona = coord.persona.map(|p| p.to_string()).unwrap_or_default();
        let digits: Vec<String> = rec
            .digit_logprobs
            .iter()
            .map(|d| d.map(fmt_float).unwrap_or_default())
            .collect();
        let missing: Vec<String> = rec
            .digit_logprobs
            .iter()
            .enumerate()
            .filter(|(_, d)| d.is_none())
            .map(|(i, _)| i.to_string())
            .collect();
        let fields: [String; 19] = [
            persona,
            coord.item.to_string(),
            item.kind.name().to_string(),
            item.foundation.name().to_string(),
            self.meta.model_name.clone(),
            self.temperature.clone(),
            rec.top_logprobs_requested.to_string(),
            self.meta.prompt_mode.clone(),
            rec.first_token.clone(),
            fmt_float(rec.first_token_logprob),
            digits[0].clone(),
            digits[1].clone(),
            digits[2].clone(),
            digits[3].clone(),
            digits[4].clone(),
            digits[5].clone(),
            missing.join(","),
            rec.raw_top_logprobs_json.clone(),
            rec.collected_at.clone(),
        ];
        self.file.write(&fields)?;
        self.line += self.meta.lines_of(rec);
        Ok(())
    }

    /// Flushes, syncs and renames the file into place.
    pub fn finish(self) -> Result<PathBuf, FormatError> {
        self.file.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_imputation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m_logprobs.csv");
        let meta = LogprobMeta {
            model_name: "m".into(),
            temperature: 1.0,
            prompt_mode: "mfq_persona".into(),
        };
        let mut w = LogprobWriter::create(&path, meta).unwrap();
        let rec = LogprobRecord {
            first_token: "2".into(),
            first_token_logprob: -0.5,
            digit_logprobs: [Some(-3.0), Some(-1.0), Some(-0.5), None, Some(-4.0), None],
            raw_top_logprobs_json:
                r#"[{"token": "2", "logprob": -0.5}, {"token": "As", "logprob": -6.5}]"#.into(),
            top_logprobs_requested: 20,
            collected_at: "2026-11-27T00:00:00".into(),
        };
        w.write_row(
            SlotCoord {
                persona: Some(4),
                item: 2,
                run: 1,
            },
            &rec,
        )
        .unwrap();
        w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next().unwrap(), LOGPROB_COLUMNS.join(","));
        assert!(lines
            .next()
            .unwrap()
            .starts_with("4,2,relevance,Fairness/Reciprocity,m,1.0,20,mfq_persona,2,-0.5,-3.0,-1.0,-0.5,,-4.0,,\"3,5\",\"[{"));
        let f = read_logprobs(&path).unwrap();
        assert_eq!(f.rows.len(), 1);
        assert_eq!(f.rows[0].digit_logprobs, rec.digit_logprobs);
        assert_eq!(f.rows[0].imputed, [-3.0, -1.0, -0.5, -6.5, -4.0, -6.5]);
    }

    #[test]
    fn bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m_logprobs.csv");
        let h = LOGPROB_COLUMNS.join(",");
        std::fs::write(
            &path,
            format!("{h}\n0,1,r,f,m,1.0,20,p,2,-1,-1,-1,-1,x,-1,-1,,[],t\n"),
        )
        .unwrap();
        let e = read_logprobs(&path).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("digit_3_logprob"), "{e}");
        std::fs::write(
            &path,
            format!("{h}\n0,1,r,f,m,1.0,20,p,2,-1,-1,-1,-1,,-1,-1,,[],t\n"),
        )
        .unwrap();
        let e = read_logprobs(&path).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("digit 3"), "{e}");
        std::fs::write(
            &path,
            format!("{h}\n0,1,r,f,m,1.0,20,p,2,-1,-1,-1,-1,,-1,-1,,[oops,t\n"),
        )
        .unwrap();
        let e = read_logprobs(&path).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("JSON"), "{e}");
    }
}
