//! `moralsweep compare A.csv B.csv`: the paired comparison of two sampling
//! files, B against A, whatever their model keys.

use super::comparisons::{adjust, ComparisonRow};
use super::*;
use crate::formats::{parse_file_name, FileKind, FormatError};
use crate::metrics::{paired_compare, paired_sets, CellTable, PairedOptions};
use moralsweep_common::instrument::Instrument;
use std::path::Path;

/// The outcome of [`compare_files`].
#[derive(Debug, Clone)]
pub struct FileComparison {
    /// One row per metric and group, adjusted over these rows.
    pub rows: Vec<ComparisonRow>,
    /// Personas one file kept but the other did not (they are not paired).
    pub unpaired: usize,
    pub instrument: std::sync::Arc<Instrument>,
}

/// Compares the sampling file `b` against `a`: the personas both keep on
/// the items both hold are paired. `opts` gives the instrument (or it is
/// recognised), what a repeated slot means and, with `paired`, the draws
/// and seed.
pub fn compare_files(
    a: &Path,
    b: &Path,
    opts: &AnalyzeOptions,
    paired: &PairedOptions,
) -> Result<FileComparison, AnalyzeError> {
    let mut part = Partial::default();
    let (ta, ka, inst_a) = read_table(a, opts, &mut part)?;
    let (tb, kb, inst_b) = read_table(b, opts, &mut part)?;
    if inst_a.name != inst_b.name {
        return Err(AnalyzeError::MixedInstruments {
            first: a.to_path_buf(),
            first_instrument: inst_a.name.clone(),
            second: b.to_path_buf(),
            second_instrument: inst_b.name.clone(),
        });
    }
    let (items, personas) = paired_sets(&ta, &tb);
    let kept = |t: &CellTable| t.kept_personas(&items).len();
    let unpaired = kept(&ta) + kept(&tb) - 2 * personas.len();
    // Two replays of one model share a key: name them by their paths.
    let (na, nb) = if ka == kb {
        (a.display().to_string(), b.display().to_string())
    } else {
        (ka, kb)
    };
    let result = paired_compare(
        &inst_a,
        &ta,
        &tb,
        &personas,
        &items,
        paired,
        &format!("{na}|{nb}"),
    )
    .map_err(|e| {
        AnalyzeError::Format(FormatError::Invalid {
            path: b.to_path_buf(),
            message: format!("cannot be compared with {}: {e}", a.display()),
        })
    })?;
    let mut rows: Vec<ComparisonRow> = result
        .rows
        .into_iter()
        .map(|p| ComparisonRow {
            variant: nb.clone(),
            base: na.clone(),
            family: String::new(),
            temperature: None,
            paired: p,
            p_holm: f64::NAN,
            p_bh: f64::NAN,
            personas_paired: result.personas,
            items_paired: result.items,
            resamples: paired.resamples,
            seed: paired.seed,
        })
        .collect();
    adjust(&mut rows);
    Ok(FileComparison {
        rows,
        unpaired,
        instrument: inst_a,
    })
}

/// Reads one sampling file into a cell table, with its model key (the file
/// name's key, or its stem when the name follows no convention).
fn read_table(
    path: &Path,
    opts: &AnalyzeOptions,
    part: &mut Partial,
) -> Result<(CellTable, String, std::sync::Arc<Instrument>), AnalyzeError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (key, kind) = match parse_file_name(&name) {
        Some(f) => match f.kind {
            FileKind::Sampling { .. } => (f.key, f.kind),
            _ => {
                return Err(AnalyzeError::Format(FormatError::Invalid {
                    path: path.to_path_buf(),
                    message: "not a persona sampling file (a self or logprob file); compare takes two files with persona_id,question_id,run_index,rating,... rows".into(),
                }))
            }
        },
        None => (
            name.strip_suffix(".csv").unwrap_or(&name).to_string(),
            FileKind::Sampling { temperature: 0.0 },
        ),
    };
    let size = std::fs::metadata(path)
        .map_err(|error| AnalyzeError::Io {
            path: path.to_path_buf(),
            error,
        })?
        .len();
    let found = FoundFile {
        path: path.to_path_buf(),
        relative: name,
        key: key.clone(),
        kind,
        size,
    };
    let source = Source {
        found: &found,
        rows: None,
    };
    let (file, inst) = task::read_rated(&source, false, opts, part)?;
    task::check_rating_rows(&found, &file.rows, false, opts, part)?;
    let table = CellTable::from_rows(
        file.rows
            .iter()
            .map(|r| (r.persona.unwrap_or(0), r.item, r.rating)),
    );
    Ok((table, key, inst))
}

/// One sampling file of a pilot (`moralsweep plan --pilot`).
#[derive(Debug, Clone)]
pub struct PilotFile {
    pub key: String,
    /// The file's temperature (0 when its name gives none).
    pub temperature: f64,
    pub path: std::path::PathBuf,
    pub table: CellTable,
    /// The items of the file and the personas with a valid rating for each.
    pub items: Vec<u8>,
    pub personas: Vec<u32>,
    pub instrument: std::sync::Arc<Instrument>,
}

/// The persona sampling files of a pilot: `path` itself when it is a file,
/// else every sampling file found under the directory (self and logprob
/// files are skipped). An error when there is none.
pub fn read_pilot(path: &Path, opts: &AnalyzeOptions) -> Result<Vec<PilotFile>, AnalyzeError> {
    let files: Vec<std::path::PathBuf> = if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        scan(path)?
            .files
            .into_iter()
            .filter(|f| matches!(f.kind, FileKind::Sampling { .. }))
            .map(|f| f.path)
            .collect()
    };
    if files.is_empty() {
        return Err(AnalyzeError::NoFiles {
            dir: path.to_path_buf(),
            skipped: "; a pilot needs persona sampling files (<key>_temp<TT>.csv)".into(),
        });
    }
    let mut part = Partial::default();
    let mut out = Vec::new();
    for f in files {
        let (table, key, instrument) = read_table(&f, opts, &mut part)?;
        let temperature = f
            .file_name()
            .and_then(|n| parse_file_name(&n.to_string_lossy()))
            .and_then(|n| match n.kind {
                FileKind::Sampling { temperature } => Some(temperature),
                _ => None,
            })
            .unwrap_or(0.0);
        let items = table.items();
        let personas = table.kept_personas(&items);
        out.push(PilotFile {
            key,
            temperature,
            path: f,
            table,
            items,
            personas,
            instrument,
        });
    }
    Ok(out)
}
