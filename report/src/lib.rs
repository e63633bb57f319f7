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

pub mod bounds;
pub mod data;
pub mod figures;
pub mod glyphs;
pub mod html;

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
    #[error("--out {0}: give the path of an HTML file, not of a folder")]
    NotAFileName(PathBuf),
    /// Writing the page or a figure (a link, FIFO or device in the way).
    #[error(transparent)]
    Write(#[from] moralsweep_userfs::WriteError),
    /// The io error's text is in the message (not a `source()`), so a
    /// printed chain shows it once.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A metric or rating file that is not the CSV it should be.
    #[error(transparent)]
    Table(#[from] moralsweep_analysis::analyze::read::TableError),
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
    /// Told of each regular file the report replaces, just before.
    pub on_replace: Option<moralsweep_userfs::OnReplace>,
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
    let figs = figures::all(&d, false)?;
    Ok(html::page(&d, &figs))
}

/// Writes the report of `dir`: the HTML file and `figures/` beside it,
/// through [`moralsweep_userfs::OutDir`]: nothing is written through a link,
/// and an HTML path or figure that is not a regular file (a FIFO, a device,
/// a folder) is refused before anything is drawn.
pub fn write(dir: &Path, opts: &Options) -> Result<Written, ReportError> {
    let html_path = opts.out.clone().unwrap_or_else(|| dir.join("report.html"));
    let name = match html_path.file_name() {
        Some(n) if !html_path.as_os_str().to_string_lossy().ends_with('/') => n.to_owned(),
        _ => return Err(ReportError::NotAFileName(html_path)),
    };
    let parent = html_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    // What is in the way is refused before anything is read, drawn or created.
    if let Some(out) = moralsweep_userfs::OutDir::open(&parent)? {
        out.existing(&name)?;
    }
    let mut d = load(dir, opts.data.as_deref())?;
    if let Some(v) = &opts.verification {
        let mut sources = std::mem::take(&mut d.sources);
        d.read_verification(v, &mut sources)?;
        d.sources = sources;
    }
    let mut out = moralsweep_userfs::OutDir::create(&parent)?;
    out.on_replace(opts.on_replace.clone());
    out.existing(&name)?;
    let figs = figures::all(&d, !opts.no_figure_files)?;
    let mut files = Vec::new();
    if !opts.no_figure_files {
        for f in &figs {
            let svg = format!("figures/{}.svg", f.id);
            out.write(&svg, f.svg.as_bytes())?;
            files.push(out.shown(&svg));
            if let Some(bytes) = &f.png {
                let png = format!("figures/{}.png", f.id);
                out.write(&png, bytes)?;
                files.push(out.shown(&png));
            }
        }
    }
    let page = html::page(&d, &figs);
    out.write(&name, page.as_bytes())?;
    Ok(Written {
        html: html_path,
        figures: files,
        markers: figs.iter().map(|f| f.markers).sum(),
    })
}

/// A PNG file of an RGB buffer (8 bits a channel), as plotters draws it.
pub(crate) fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header()?;
        w.write_image_data(rgb)?;
        w.finish()?;
    }
    Ok(out)
}
