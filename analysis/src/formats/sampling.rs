//! Sampling and self files: one row per recorded slot.

use std::fs::File;
use std::path::{Path, PathBuf};

use moralsweep_common::instrument::{Instrument, Scale};
use moralsweep_common::slot::{SampleRecord, SlotCoord};
use moralsweep_common::spec::Mode;

use super::{csv_error, parse_int, AtomicCsv, FormatError};

/// Columns of a sampling file, in the papers' order.
pub const SAMPLING_COLUMNS: [&str; 7] = [
    "persona_id",
    "question_id",
    "run_index",
    "rating",
    "failures",
    "response",
    "collected_at",
];

/// Columns of a self file, in the papers' order.
pub const SELF_COLUMNS: [&str; 6] = [
    "question_id",
    "run_index",
    "rating",
    "failures",
    "response",
    "collected_at",
];

/// The part of a sampling row the metrics need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatingRow {
    /// Persona id; `None` in a self file.
    pub persona: Option<u32>,
    /// Item id 1-30.
    pub item: u8,
    pub run: u32,
    /// 0-5, or -1 when no rating could be extracted.
    pub rating: i8,
    pub failures: u32,
}

/// The rows of one sampling or self file, in file order.
#[derive(Debug, Clone)]
pub struct SamplingFile {
    pub path: PathBuf,
    /// True for a self file (no `persona_id`).
    pub self_mode: bool,
    pub rows: Vec<RatingRow>,
}

/// A full sampling row, with the line it started on.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingRecordRow {
    pub line: u64,
    pub coord: SlotCoord,
    pub record: SampleRecord,
}

struct Columns {
    persona: Option<usize>,
    question: usize,
    run: usize,
    rating: usize,
    failures: Option<usize>,
    response: Option<usize>,
    collected_at: Option<usize>,
}

type Bounded = moralsweep_userfs::read::Bounded<File>;

fn open_reader(path: &Path) -> Result<csv::Reader<Bounded>, FormatError> {
    let file = moralsweep_userfs::open_bounded(path, moralsweep_userfs::RATINGS_LIMIT)
        .map_err(|e| FormatError::io(path, e))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .buffer_capacity(1 << 16)
        .from_reader(file))
}

fn find_columns(
    path: &Path,
    reader: &mut csv::Reader<Bounded>,
    self_mode: bool,
) -> Result<Columns, FormatError> {
    let headers = reader
        .byte_headers()
        .map_err(|e| csv_error(path, e))?
        .clone();
    if headers.is_empty() || (headers.len() == 1 && headers[0].is_empty()) {
        return Err(FormatError::Invalid {
            path: path.to_path_buf(),
            message: "the file is empty; expected a header row".into(),
        });
    }
    let find = |name: &str| {
        headers.iter().position(|h| {
            let h = std::str::from_utf8(h).unwrap_or("");
            h.trim_start_matches('\u{feff}').trim() == name
        })
    };
    let (kind, needed) = if self_mode {
        ("self", SELF_COLUMNS.join(","))
    } else {
        ("sampling", SAMPLING_COLUMNS.join(","))
    };
    let need = |name: &'static str| {
        find(name).ok_or_else(|| FormatError::MissingColumn {
            path: path.to_path_buf(),
            column: name,
            kind,
            needed: needed.clone(),
        })
    };
    Ok(Columns {
        persona: if self_mode {
            None
        } else {
            Some(need("persona_id")?)
        },
        question: need("question_id")?,
        run: need("run_index")?,
        rating: need("rating")?,
        failures: find("failures"),
        response: find("response"),
        collected_at: find("collected_at"),
    })
}

/// What a row's item id and rating may be: those of one instrument, or
/// (while recognising the instrument) anything an instrument can hold.
#[derive(Debug, Clone, Copy)]
pub struct RowLimits<'a> {
    /// The instrument's name, for messages (`None`: any instrument).
    pub instrument: Option<&'a str>,
    pub items: u8,
    pub scale: Scale,
}

impl RowLimits<'_> {
    /// Whether `item` is an item id within the limits.
    pub fn admits_item(&self, item: i64) -> bool {
        (1..=self.items as i64).contains(&item)
    }

    /// Whether `rating` is on the scale, or -1 (no rating extracted).
    pub fn admits_rating(&self, rating: i64) -> bool {
        rating == -1 || self.scale.contains(rating)
    }

    /// Whether the reader would take `row` (its item id and rating).
    pub fn admits(&self, row: &RatingRow) -> bool {
        self.admits_item(row.item as i64) && self.admits_rating(row.rating as i64)
    }

    /// The limits of `instrument`.
    pub fn of(instrument: &Instrument) -> RowLimits<'_> {
        RowLimits {
            instrument: Some(&instrument.name),
            items: instrument.item_count() as u8,
            scale: instrument.scale,
        }
    }

    /// Any item id 1-255 and any single-digit rating: for reading a file
    /// before its instrument is known.
    pub const ANY: RowLimits<'static> = RowLimits {
        instrument: None,
        items: 255,
        scale: Scale { min: 0, max: 9 },
    };
}

fn parse_row(
    path: &Path,
    line: u64,
    rec: &csv::ByteRecord,
    cols: &Columns,
    limits: &RowLimits,
) -> Result<RatingRow, FormatError> {
    let bad = |column: &str, expected: &str, value: &[u8]| FormatError::Row {
        path: path.to_path_buf(),
        line,
        message: format!(
            "`{column}` is {:?}; expected {expected}",
            String::from_utf8_lossy(value)
        ),
    };
    let field = |i: usize| rec.get(i).unwrap_or(b"");
    let persona = match cols.persona {
        Some(i) => {
            let v = field(i);
            match parse_int(v) {
                Some(p) if (0..=u32::MAX as i64).contains(&p) => Some(p as u32),
                _ => return Err(bad("persona_id", "a non-negative integer", v)),
            }
        }
        None => None,
    };
    let v = field(cols.question);
    let item = match parse_int(v) {
        Some(q) if limits.admits_item(q) => q as u8,
        _ => {
            let expected = match limits.instrument {
                Some("mfq-30") => "an MFQ-30 item id 1-30".to_string(),
                Some(name) => format!("an item id 1-{} of instrument {name}", limits.items),
                None => format!("an item id 1-{}", limits.items),
            };
            return Err(bad("question_id", &expected, v));
        }
    };
    let v = field(cols.run);
    let run = match parse_int(v) {
        Some(r) if (0..=u32::MAX as i64).contains(&r) => r as u32,
        _ => return Err(bad("run_index", "a non-negative integer", v)),
    };
    let v = field(cols.rating);
    let rating = match parse_int(v) {
        Some(r) if limits.admits_rating(r) => r as i8,
        _ => {
            let of = limits
                .instrument
                .map(|n| format!(" (the scale of {n})"))
                .unwrap_or_default();
            return Err(bad(
                "rating",
                &format!(
                    "an integer {}{of}, or -1 where no rating was extracted",
                    limits.scale.range()
                ),
                v,
            ));
        }
    };
    let failures = match cols.failures {
        Some(i) => {
            let v = field(i);
            if v.iter().all(|b| b.is_ascii_whitespace()) {
                0
            } else {
                match parse_int(v) {
                    Some(f) if (0..=u32::MAX as i64).contains(&f) => f as u32,
                    _ => return Err(bad("failures", "a non-negative integer", v)),
                }
            }
        }
        None => 0,
    };
    Ok(RatingRow {
        persona,
        item,
        run,
        rating,
        failures,
    })
}

fn for_each_row(
    path: &Path,
    self_mode: bool,
    limits: &RowLimits,
    mut each: impl FnMut(u64, &csv::ByteRecord, &Columns, RatingRow) -> Result<(), FormatError>,
) -> Result<(), FormatError> {
    let mut reader = open_reader(path)?;
    let cols = find_columns(path, &mut reader, self_mode)?;
    let mut rec = csv::ByteRecord::new();
    loop {
        match reader.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(path, e)),
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        if rec.len() == 1 && rec[0].is_empty() {
            continue; // a blank line
        }
        let row = parse_row(path, line, &rec, &cols, limits)?;
        each(line, &rec, &cols, row)?;
    }
    Ok(())
}

/// The first slot of a sampling or self file that appears on two rows:
/// `(slot, first line, repeating line)`, or `None` when every
/// (persona, question, run_index) slot appears once. Line numbers are the
/// file's (the header is line 1).
pub fn first_repeated_slot(
    path: &Path,
    self_mode: bool,
) -> Result<Option<(SlotCoord, u64, u64)>, FormatError> {
    let mut seen = std::collections::HashMap::new();
    let mut found = None;
    for_each_row(path, self_mode, &RowLimits::ANY, |line, _, _, row| {
        let coord = SlotCoord {
            persona: row.persona,
            item: row.item,
            run: row.run,
        };
        if found.is_none() {
            if let Some(first) = seen.insert(coord, line) {
                found = Some((coord, first, line));
            }
        }
        Ok(())
    })?;
    Ok(found)
}

/// Reads the ratings of an MFQ-30 sampling file (`self_mode = false`) or
/// self file.
pub fn read_sampling(path: &Path, self_mode: bool) -> Result<SamplingFile, FormatError> {
    read_sampling_in(path, self_mode, &RowLimits::of(&Instrument::mfq30()))
}

/// Reads the ratings of a sampling or self file whose item ids and ratings
/// are within `limits`.
pub fn read_sampling_in(
    path: &Path,
    self_mode: bool,
    limits: &RowLimits,
) -> Result<SamplingFile, FormatError> {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut rows = Vec::with_capacity((size / 24).min(1 << 22) as usize);
    for_each_row(path, self_mode, limits, |_, _, _, row| {
        rows.push(row);
        Ok(())
    })?;
    Ok(SamplingFile {
        path: path.to_path_buf(),
        self_mode,
        rows,
    })
}

/// Reads every row of a sampling or self file with its response text and
/// timestamp.
pub fn read_sampling_records(
    path: &Path,
    self_mode: bool,
) -> Result<Vec<SamplingRecordRow>, FormatError> {
    let mut out = Vec::new();
    for_each_row(path, self_mode, &RowLimits::ANY, |line, rec, cols, row| {
        let text = |i: Option<usize>| -> Result<String, FormatError> {
            match i.and_then(|i| rec.get(i)) {
                None => Ok(String::new()),
                Some(b) => String::from_utf8(b.to_vec()).map_err(|_| FormatError::Row {
                    path: path.to_path_buf(),
                    line,
                    message: "a field is not valid UTF-8".into(),
                }),
            }
        };
        out.push(SamplingRecordRow {
            line,
            coord: SlotCoord {
                persona: row.persona,
                item: row.item,
                run: row.run,
            },
            record: SampleRecord {
                rating: row.rating,
                failures: row.failures,
                response: text(cols.response)?,
                collected_at: text(cols.collected_at)?,
            },
        });
        Ok(())
    })?;
    Ok(out)
}

/// Writes a sampling or self file atomically: rows go to a temporary file
/// beside `path`, which [`SamplingWriter::finish`] renames into place. A
/// writer dropped without `finish` removes its temporary file.
pub struct SamplingWriter {
    self_mode: bool,
    file: AtomicCsv,
}

impl SamplingWriter {
    /// Starts a file for `Mode::Persona` (sampling) or `Mode::SelfMode` (self).
    pub fn create(path: &Path, mode: Mode) -> Result<SamplingWriter, FormatError> {
        let self_mode = match mode {
            Mode::Persona => false,
            Mode::SelfMode => true,
            other => {
                return Err(FormatError::Invalid {
                    path: path.to_path_buf(),
                    message: format!("a sampling file holds persona or self ratings, not {other} results; use LogprobWriter for logprob mode and moralsweep_analysis::em::file for em-check"),
                })
            }
        };
        let header: &[&str] = if self_mode {
            &SELF_COLUMNS
        } else {
            &SAMPLING_COLUMNS
        };
        Ok(SamplingWriter {
            self_mode,
            file: AtomicCsv::create(path, header)?,
        })
    }

    /// Appends one slot's row.
    pub fn write_row(&mut self, coord: SlotCoord, rec: &SampleRecord) -> Result<(), FormatError> {
        let persona = match (self.self_mode, coord.persona) {
            (true, _) => None,
            (false, Some(p)) => Some(p),
            (false, None) => {
                return Err(FormatError::Invalid {
                    path: self.file.path().to_path_buf(),
                    message: format!(
                    "slot (item {}, run {}) has no persona, but this is a persona sampling file",
                    coord.item, coord.run
                ),
                })
            }
        };
        let q = coord.item.to_string();
        let r = coord.run.to_string();
        let rating = rec.rating.to_string();
        let failures = rec.failures.to_string();
        match persona {
            Some(p) => {
                let p = p.to_string();
                self.file.write([
                    p.as_str(),
                    &q,
                    &r,
                    &rating,
                    &failures,
                    &rec.response,
                    &rec.collected_at,
                ])
            }
            None => self.file.write([
                q.as_str(),
                &r,
                &rating,
                &failures,
                &rec.response,
                &rec.collected_at,
            ]),
        }
    }

    /// Flushes, syncs and renames the file into place.
    pub fn finish(self) -> Result<PathBuf, FormatError> {
        self.file.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(rating: i8, response: &str) -> SampleRecord {
        SampleRecord {
            rating,
            failures: 0,
            response: response.into(),
            collected_at: "2025-11-04T17:58:19.530996".into(),
        }
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m_temp01.csv");
        let mut w = SamplingWriter::create(&path, Mode::Persona).unwrap();
        let rows = [
            (
                SlotCoord {
                    persona: Some(0),
                    item: 1,
                    run: 1,
                },
                rec(4, "4\n\nAs a \"product\", manager, yes"),
            ),
            (
                SlotCoord {
                    persona: Some(0),
                    item: 1,
                    run: 1,
                },
                rec(-1, ""),
            ),
            (
                SlotCoord {
                    persona: Some(7),
                    item: 30,
                    run: 10,
                },
                rec(5, "5"),
            ),
        ];
        for (c, r) in &rows {
            w.write_row(*c, r).unwrap();
        }
        assert!(!path.exists(), "nothing visible before finish");
        w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("persona_id,question_id,run_index,rating,failures,response,collected_at\n0,1,1,4,0,\"4\n"));
        let back = read_sampling_records(&path, false).unwrap();
        assert_eq!(back.len(), 3);
        for ((c, r), b) in rows.iter().zip(&back) {
            assert_eq!(&b.coord, c);
            assert_eq!(&b.record, r);
        }
        assert_eq!(back[1].line, 5, "a multi-line field moves the line count");
        let fast = read_sampling(&path, false).unwrap();
        assert_eq!(fast.rows.len(), 3);
        assert_eq!(fast.rows[2].persona, Some(7));
        // Nothing left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn self_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m_temp01_self.csv");
        let mut w = SamplingWriter::create(&path, Mode::SelfMode).unwrap();
        w.write_row(
            SlotCoord {
                persona: None,
                item: 3,
                run: 2,
            },
            &rec(2, "2"),
        )
        .unwrap();
        w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "question_id,run_index,rating,failures,response,collected_at\n3,2,2,0,2,2025-11-04T17:58:19.530996\n"
        );
        let f = read_sampling(&path, true).unwrap();
        assert_eq!(f.rows[0].persona, None);
        assert_eq!(f.rows[0].item, 3);
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m_temp01.csv");
        let w = SamplingWriter::create(&path, Mode::Persona).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(SamplingWriter::create(&path, Mode::Logprob).is_err());
    }

    fn read_err(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad_temp01.csv");
        std::fs::write(&path, text).unwrap();
        read_sampling(&path, false).unwrap_err().to_string()
    }

    #[test]
    fn malformed_rows_name_file_and_line() {
        let h = "persona_id,question_id,run_index,rating,failures,response,collected_at\n";
        let e = read_err(&format!("{h}0,1,1,4,0,4,t\n0,1,2,7,0,7,t\n"));
        assert!(
            e.contains("bad_temp01.csv") && e.contains("line 3") && e.contains("rating"),
            "{e}"
        );
        let e = read_err(&format!("{h}0,1,1,4,0,4,t\n0,31,2,4,0,4,t\n"));
        assert!(e.contains("line 3") && e.contains("question_id"), "{e}");
        let e = read_err(&format!("{h}0,1,1,4,0,4\n"));
        assert!(e.contains("line 2") && e.contains("fields"), "{e}");
        let e = read_err(&format!("{h}x,1,1,4,0,4,t\n"));
        assert!(e.contains("line 2") && e.contains("persona_id"), "{e}");
        let e = read_err(&format!("{h}0,1,1,,0,,t\n"));
        assert!(e.contains("line 2") && e.contains("rating"), "{e}");
        let e = read_err("persona_id,question_id,rating\n0,1,4\n");
        assert!(e.contains("run_index"), "{e}");
        let e = read_err("");
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn extra_columns_any_order_and_float_ints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m_temp01.csv");
        std::fs::write(
            &path,
            "extra,rating,run_index,question_id,persona_id\nz,4.0,1,2,3\ny,-1,2,2,3\n",
        )
        .unwrap();
        let f = read_sampling(&path, false).unwrap();
        assert_eq!(f.rows.len(), 2);
        assert_eq!(
            (f.rows[0].persona, f.rows[0].item, f.rows[0].rating),
            (Some(3), 2, 4)
        );
        assert_eq!(f.rows[1].rating, -1);
    }
}
