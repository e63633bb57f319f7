//! `moralsweep report`: the papers' figures and tables of a sweep as one
//! self-contained HTML file (inline SVG, CSS and script; it opens offline
//! from a file and makes no network request), plus every figure as SVG and
//! PNG in a `figures/` folder beside it, ready for a paper.
//!
//! It reads the metric CSVs that `moralsweep analyze`, `run` and the
//! coordinator write (or the published reference files with the papers'
//! column names): [`data`] loads them, [`figures`] draws them with plotters,
//! [`html`] assembles the page. It depends on `common` only.
//!
//! Layer: above `moralsweep-common` (its only workspace dependency); only the
//! binary uses it.

use std::path::{Path, PathBuf};

pub mod coherence;
pub mod data;
pub mod figures;
pub mod html;
pub mod paired;

pub use data::{load, ReportData};

/// What can go wrong making a report; each names the file and what would be right.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "{0} is not a directory; give the directory `moralsweep run`, `results` or `analyze` wrote"
    )]
    NotADirectory(PathBuf),
    #[error("no metric files in {0} (nor in its metrics/): expected persona_moral_metrics.csv, temperature_curve_metrics.csv or the other files `moralsweep analyze` writes")]
    NoMetrics(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A metric or rating file that is not the CSV it should be.
    #[error(transparent)]
    Table(#[from] moralsweep_common::analyze::read::TableError),
    #[error("{path}: {message}")]
    Data { path: PathBuf, message: String },
    #[error("drawing figure {figure}: {message}")]
    Draw {
        figure: &'static str,
        message: String,
    },
}

/// How a report is made.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The HTML file (default: `<dir>/report.html`).
    pub out: Option<PathBuf>,
    /// Where the rating files are (default: `<dir>/data` when it exists);
    /// they give the failure counts.
    pub data: Option<PathBuf>,
    /// Write no `figures/` folder (the live view renders pages in memory).
    pub no_figure_files: bool,
    /// A `verification_scores.json` to use (default: the one in the
    /// metrics folder, if any): robustness is drawn against its coherence.
    pub verification: Option<PathBuf>,
}

/// What [`write`] produced.
#[derive(Debug, Clone)]
pub struct Written {
    pub html: PathBuf,
    /// `figures/<id>.svg` and `.png`, in page order.
    pub figures: Vec<PathBuf>,
    /// Values plotted, over all figures.
    pub markers: usize,
}

/// The page of `dir`, in memory (no file written).
pub fn render_html(dir: &Path, data_dir: Option<&Path>) -> Result<String, ReportError> {
    let d = load(dir, data_dir)?;
    let figs = figures::all(&d, None)?;
    Ok(html::page(&d, &figs))
}

/// Writes the report of `dir`: the HTML file and `figures/` beside it.
pub fn write(dir: &Path, opts: &Options) -> Result<Written, ReportError> {
    let mut d = load(dir, opts.data.as_deref())?;
    if let Some(v) = &opts.verification {
        let mut sources = std::mem::take(&mut d.sources);
        d.read_verification(v, &mut sources)?;
        d.sources = sources;
    }
    let html_path = opts.out.clone().unwrap_or_else(|| dir.join("report.html"));
    let parent = html_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let io = |path: &Path, source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(&parent).map_err(|e| io(&parent, e))?;
    let fig_dir = parent.join("figures");
    if !opts.no_figure_files {
        std::fs::create_dir_all(&fig_dir).map_err(|e| io(&fig_dir, e))?;
    }
    let figs = figures::all(&d, (!opts.no_figure_files).then_some(fig_dir.as_path()))?;
    let mut files = Vec::new();
    if !opts.no_figure_files {
        for f in &figs {
            let svg = fig_dir.join(format!("{}.svg", f.id));
            write_atomic(&svg, f.svg.as_bytes())?;
            files.push(svg);
            files.push(fig_dir.join(format!("{}.png", f.id)));
        }
    }
    let page = html::page(&d, &figs);
    write_atomic(&html_path, page.as_bytes())?;
    Ok(Written {
        html: html_path,
        figures: files,
        markers: figs.iter().map(|f| f.markers).sum(),
    })
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(|source| ReportError::Io {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, path).map_err(|source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    })
}
