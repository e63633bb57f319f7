//! `moralsweep report DIR [--out FILE.html]`: the papers' figures and tables
//! of a sweep (or of any `analyze` output) as one offline HTML file, with
//! every figure as SVG and PNG in `figures/` beside it. See
//! `moralsweep_report`. `run` and `results` call [`write_default`] when they
//! finish.

use std::path::{Path, PathBuf};

use anyhow::Context;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// A sweep's output directory (with metrics/) or a directory of metric
    /// files as `moralsweep analyze` writes them.
    pub dir: PathBuf,
    /// The HTML file (default: DIR/report.html); figures/ goes beside it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The rating files, for the failure counts (default: DIR/data when it exists).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// A misalignment check's summaries (`verification_scores.json`, e.g.
    /// a paper's published one; default: the one in the metrics folder):
    /// robustness is drawn against their coherence, for the models in both.
    #[arg(long)]
    pub verification: Option<PathBuf>,
}

pub fn report(a: ReportArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let written = moralsweep_report::write(
        &a.dir,
        &moralsweep_report::Options {
            out: a.out.clone(),
            data: a.data.clone(),
            no_figure_files: false,
            verification: a.verification.clone(),
        },
    )
    .with_context(|| format!("making the report of {}", a.dir.display()))?;
    println!(
        "wrote {} ({} figures, {} plotted values) in {:.2} s",
        written.html.display(),
        written.figures.len() / 2,
        written.markers,
        started.elapsed().as_secs_f64()
    );
    for f in &written.figures {
        println!("wrote {}", f.display());
    }
    Ok(())
}

/// The report `run` and `results` write next to the metrics. Says why when
/// it could not be written (an error when `fatal`: `run` then exits
/// non-zero, the sweep's files being complete and its report not; else a
/// warning) and returns false then; a folder without metrics has no report
/// and that is no failure.
pub fn write_default(dir: &Path, fatal: bool) -> bool {
    match moralsweep_report::write(dir, &moralsweep_report::Options::default()) {
        Ok(w) => {
            println!("report: {}", w.html.display());
            true
        }
        Err(moralsweep_report::ReportError::NoMetrics(_)) => true,
        Err(e) => {
            eprintln!(
                "{}: no report written: {e}; the data and metric files are complete; run `moralsweep report {}` after fixing it",
                if fatal { "error" } else { "warning" },
                dir.display()
            );
            false
        }
    }
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Writes `<dir>/provenance.json`, which the report shows: the tool and its
/// version, the sweep, the spec (its file, SHA-256 and text) when known,
/// `fields` (dates) and the usage and cost per model when known. A failure
/// is a warning: the sweep's files are complete without it.
pub fn write_provenance(
    dir: &Path,
    sweep: &str,
    spec_file: Option<&Path>,
    fields: &[(&str, String)],
    cost: Option<serde_json::Value>,
) {
    use sha2::Digest;
    let mut v = serde_json::Map::new();
    v.insert("sweep".into(), sweep.into());
    v.insert("tool".into(), "moralsweep".into());
    v.insert("tool_version".into(), env!("CARGO_PKG_VERSION").into());
    if let Some(path) = spec_file {
        match std::fs::read(path) {
            Ok(bytes) => {
                v.insert("spec_file".into(), path.display().to_string().into());
                v.insert(
                    "spec_sha256".into(),
                    hex::encode(sha2::Sha256::digest(&bytes)).into(),
                );
                v.insert(
                    "spec_toml".into(),
                    String::from_utf8_lossy(&bytes).into_owned().into(),
                );
            }
            Err(e) => eprintln!("warning: provenance: cannot read {}: {e}", path.display()),
        }
    }
    for (k, val) in fields {
        v.insert((*k).into(), val.clone().into());
    }
    if let Some(c) = cost {
        v.insert("cost".into(), c);
    }
    let path = dir.join(moralsweep_report::data::PROVENANCE_FILE);
    let text = match serde_json::to_string_pretty(&serde_json::Value::Object(v)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("warning: provenance: {e}");
            return;
        }
    };
    if let Err(e) = std::fs::create_dir_all(dir).and_then(|_| std::fs::write(&path, text + "\n")) {
        eprintln!("warning: cannot write {}: {e}", path.display());
    }
}

/// The files `run`/`results` write beside a sweep's data and metrics (the
/// provenance, the report page and its figures), relative to `dir`, for the
/// results folder's manifest.
pub fn generated_files(dir: &Path) -> Vec<String> {
    let mut files = vec![
        moralsweep_report::data::PROVENANCE_FILE.to_string(),
        "report.html".to_string(),
    ];
    if let Ok(entries) = std::fs::read_dir(dir.join("figures")) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                files.push(format!("figures/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    files
}
