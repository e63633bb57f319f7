//! `moralsweep results SWEEP --out DIR`: fetches a done (or cancelled)
//! sweep's files into a folder (`crate::cli::results_dir` keeps it safe),
//! with the provenance `run` writes (spec, hash, dates, cost) and the report.

use std::path::PathBuf;

use super::{client, pb, runtime, ClientArgs};

#[derive(clap::Args)]
pub struct ResultsArgs {
    pub sweep: String,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Where the sweep's `data/` and `metrics/` are written: a new or empty
    /// folder, or one that holds an earlier fetch of the same sweep.
    #[arg(long)]
    pub out: PathBuf,
    /// Write into a folder that holds other files (files of the same name
    /// are replaced, each named on stderr first) or another sweep's results
    /// (which are removed first, after saying so).
    #[arg(long)]
    pub force: bool,
    /// Write no report.html (and figures/) beside the metrics.
    #[arg(long)]
    pub no_report: bool,
}

pub fn results(a: ResultsArgs) -> anyhow::Result<()> {
    let opts = a.client.options()?;
    runtime()?.block_on(async move {
        let mut c = client::sweeps_client(&opts)?;
        let st = a
            .client
            .call(
                "fetching results failed",
                c.get_sweep(pb::GetSweepRequest {
                    sweep: a.sweep.clone(),
                }),
            )
            .await?
            .into_inner();
        let partial = st.state == "cancelled" && st.done < st.total;
        // The sweep's identity (its spec's hash) and provenance.
        let spec = a
            .client
            .call(
                "fetching results failed",
                c.get_sweep_spec(pb::GetSweepRequest {
                    sweep: a.sweep.clone(),
                }),
            )
            .await?
            .into_inner();
        // Checked before anything is fetched: nothing in the folder is
        // touched when it is refused.
        let mut folder =
            crate::cli::results_dir::ResultsDir::open(&a.out, &a.sweep, &spec.spec_sha256, a.force)?;
        let stream = a
            .client
            .call(
                "fetching results failed",
                c.fetch_results(pb::FetchResultsRequest {
                    sweep: a.sweep.clone(),
                }),
            )
            .await?
            .into_inner();
        let partial_note = partial.then(|| partial_text(&st));
        let files = folder.save(stream, partial_note.as_deref()).await?;
        println!(
            "{} files of sweep {} written to {}",
            files,
            a.sweep,
            a.out.display()
        );
        if !a.no_report {
            let mut fields = vec![("fetched_at", crate::cli::report::now_rfc3339())];
            if !spec.created_at.is_empty() {
                fields.push(("created_at", spec.created_at.clone()));
            }
            if !spec.finished_at.is_empty() {
                fields.push(("finished_at", spec.finished_at.clone()));
            }
            let text = (!spec.spec_toml.is_empty()).then(|| crate::cli::report::SpecText {
                file: format!("{} (as submitted to the coordinator)", spec.spec_name),
                text: spec.spec_toml.clone(),
            });
            // What the workers' calls used, as they reported it.
            let cost = (!spec.usage.is_empty()).then(|| {
                crate::cli::report::cost_json(
                    spec.usage.iter().cloned().map(moralsweep_protocol::usage::from_pb),
                )
            });
            let mut written: Vec<PathBuf> = crate::cli::report::write_provenance(
                &a.out,
                &a.sweep,
                text,
                &fields,
                cost,
                Some(folder.on_replace()),
            )
            .into_iter()
            .collect();
            written.extend(
                crate::cli::report::write_default(&a.out, Some(folder.on_replace()), false)
                    .unwrap_or_default(),
            );
            folder.record_generated(&written)?;
        } else if !folder.earlier_report().is_empty() {
            eprintln!(
                "note: --no-report: kept the report of the earlier fetch ({}); it shows the earlier files, \
                 not these: run `moralsweep report {}` to bring it up to date",
                folder
                    .earlier_report()
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
                    + if folder.earlier_report().len() > 3 { ", ..." } else { "" },
                a.out.display()
            );
        }
        if partial {
            eprintln!(
                "note: sweep {} was cancelled: these are the ratings recorded before it stopped ({} of {} slots), \
                 and the metrics where they could be computed; {} says which files are partial",
                a.sweep,
                st.done,
                st.total,
                a.out.join(crate::cli::results_dir::PARTIAL_MARKER).display()
            );
        }
        Ok(())
    })
}

/// The text of the marker a partial fetch leaves in the folder.
fn partial_text(st: &pb::SweepStatus) -> String {
    let mut t = format!(
        "Sweep {} was cancelled before it finished: {} of {} slots were recorded.\n\
         The rating files hold the rows recorded before it stopped; a unit below that is not\n\
         complete has a partial file (or none when nothing was recorded). Metrics computed\n\
         from partial files keep only the personas with a rating for every item.\n\n",
        st.sweep, st.done, st.total
    );
    for u in &st.units {
        t.push_str(&format!(
            "{} {}: {} of {} slots{}\n",
            u.model,
            u.mode,
            u.done,
            u.total,
            if u.done >= u.total { "" } else { " (partial)" }
        ));
    }
    t
}
