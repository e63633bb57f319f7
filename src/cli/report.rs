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
            // A page written where the user said may replace a file of
            // theirs (the page, or a figure beside it): each is named.
            on_replace: a.out.is_some().then(|| {
                moralsweep_userfs::OnReplace::new(|p| {
                    eprintln!("replacing {} (--out)", p.display())
                })
            }),
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
/// warning) and returns `None` then; a folder without metrics has no report
/// and that is no failure. Returns the files written (the page and its
/// figures); `on_replace` is told of each regular file replaced, just before.
pub fn write_default(
    dir: &Path,
    on_replace: Option<moralsweep_userfs::OnReplace>,
    fatal: bool,
) -> Option<Vec<PathBuf>> {
    let opts = moralsweep_report::Options {
        on_replace,
        ..Default::default()
    };
    match moralsweep_report::write(dir, &opts) {
        Ok(w) => {
            println!("report: {}", w.html.display());
            let mut files = w.figures;
            files.push(w.html);
            Some(files)
        }
        Err(moralsweep_report::ReportError::NoMetrics(_)) => Some(Vec::new()),
        Err(e) => {
            eprintln!(
                "{}: no report written: {e}; the data and metric files are complete; run `moralsweep report {}` after fixing it",
                if fatal { "error" } else { "warning" },
                dir.display()
            );
            None
        }
    }
}

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A sweep's spec for its provenance: where it came from and its text.
pub struct SpecText {
    /// The spec file (`run`), or its name at submission and the coordinator.
    pub file: String,
    pub text: String,
}

impl SpecText {
    /// Reads a spec file (bounded like every spec read); a failure is a
    /// warning and no spec in the provenance.
    pub fn read(path: &Path) -> Option<SpecText> {
        match moralsweep_userfs::read_to_string_bounded(path, moralsweep_userfs::SPEC_LIMIT) {
            Ok(text) => Some(SpecText {
                file: path.display().to_string(),
                text,
            }),
            Err(e) => {
                eprintln!("warning: provenance: cannot read {}: {e}", path.display());
                None
            }
        }
    }
}

/// The provenance's `cost` rows, which the report's Cost section shows: one
/// per model that made a call, with the same keys from `run` (its own
/// accounting) and `results` (the workers' reports to the coordinator).
pub fn cost_json(
    rows: impl IntoIterator<Item = moralsweep_protocol::UsageEntry>,
) -> serde_json::Value {
    rows.into_iter()
        .filter(|u| u.requests > 0)
        .map(|u| {
            serde_json::json!({
                "model": u.model,
                "requests": u.requests,
                "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens,
                "rate_limited": u.rate_limited,
                "retries": u.retries,
                "usd": u.usd,
            })
        })
        .collect()
}

/// Writes `<dir>/provenance.json`, which the report shows: the tool and its
/// version, the sweep, the spec (its file, SHA-256 and text) when known,
/// `fields` (dates) and the usage and cost per model when known. A failure
/// is a warning: the sweep's files are complete without it. Returns the
/// file when written.
pub fn write_provenance(
    dir: &Path,
    sweep: &str,
    spec: Option<SpecText>,
    fields: &[(&str, String)],
    cost: Option<serde_json::Value>,
    on_replace: Option<moralsweep_userfs::OnReplace>,
) -> Option<PathBuf> {
    use sha2::Digest;
    let mut v = serde_json::Map::new();
    v.insert("sweep".into(), sweep.into());
    v.insert("tool".into(), "moralsweep".into());
    v.insert("tool_version".into(), env!("CARGO_PKG_VERSION").into());
    if let Some(spec) = spec {
        v.insert("spec_file".into(), spec.file.into());
        v.insert(
            "spec_sha256".into(),
            hex::encode(sha2::Sha256::digest(spec.text.as_bytes())).into(),
        );
        v.insert("spec_toml".into(), spec.text.into());
    }
    for (k, val) in fields {
        v.insert((*k).into(), val.clone().into());
    }
    if let Some(c) = cost {
        v.insert("cost".into(), c);
    }
    let text = match serde_json::to_string_pretty(&serde_json::Value::Object(v)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("warning: provenance: {e}");
            return None;
        }
    };
    let written = moralsweep_userfs::OutDir::create(dir).and_then(|mut out| {
        out.on_replace(on_replace);
        out.write(
            moralsweep_report::data::PROVENANCE_FILE,
            (text + "\n").as_bytes(),
        )
        .map(|_| out.shown(moralsweep_report::data::PROVENANCE_FILE))
    });
    match written {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("warning: no provenance written: {e}");
            None
        }
    }
}
