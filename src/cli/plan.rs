//! `moralsweep plan --pilot DIR --detect S=+20% [--detect R=-30%]`: how
//! many personas and repetitions a comparison needs, from a pilot's
//! variance components, with the requests and cost of each design (see
//! `moralsweep_analysis::metrics::plan` and `docs/METHOD-comparisons.md`).

use std::path::PathBuf;

use anyhow::Context;
use moralsweep_analysis::analyze::{read_pilot, AnalyzeOptions};
use moralsweep_analysis::metrics::plan::{power, Pilot, Prediction};
use moralsweep_common::spec::KeyCheck;
use moralsweep_common::tokens::{estimate_tokens, Tokenizer};
use moralsweep_common::{Instrument, ModelSpec, Sweep};
use moralsweep_worker::cost::Prices;
use serde::Serialize;

#[derive(clap::Args)]
pub struct PlanArgs {
    /// A pilot sweep's data folder (or one sampling file): its persona
    /// sampling files give the variance components.
    #[arg(long)]
    pub pilot: PathBuf,
    /// A change to detect: METRIC=CHANGE with METRIC one of S, R,
    /// sigma_bar and CHANGE a relative change in percent (S=+20%, R=-30%).
    /// Repeatable; every change must reach the power.
    #[arg(long = "detect", required = true)]
    pub detect: Vec<String>,
    /// The power each change must reach.
    #[arg(long, default_value_t = 0.8)]
    pub power: f64,
    /// The two-sided test level.
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// A sweep spec: its models' prices, multi-sample and batch settings
    /// price each design, and the recommendation is given as its
    /// `persona_count` and `repetitions`.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// The pilot model to plan from (a model key of the pilot folder);
    /// default: every model, each design judged by the least favourable.
    #[arg(long)]
    pub model: Option<String>,
    /// Without --spec: the catalog entry (provider/id) whose prices price
    /// the designs (default: the entry whose id is the model key, if any).
    #[arg(long)]
    pub catalog: Option<String>,
    /// Persona counts of the grid.
    #[arg(long, value_delimiter = ',', default_values_t = [10usize, 25, 50, 100, 200, 500, 1000])]
    pub personas: Vec<usize>,
    /// Repetitions of the grid (at least 2: R needs a within-cell spread).
    #[arg(long, value_delimiter = ',', default_values_t = [2usize, 3, 5, 10, 20, 30])]
    pub repetitions: Vec<usize>,
    /// Print the grid as a JSON list of objects instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A named change: metric and relative change.
#[derive(Debug, Clone)]
struct Change {
    label: String,
    metric: Metric,
    delta: f64,
}

#[derive(Debug, Clone, Copy)]
enum Metric {
    S,
    R,
    SigmaBar,
}

fn parse_change(text: &str) -> anyhow::Result<Change> {
    let bad = || {
        anyhow::anyhow!(
            "--detect {text:?}: expected METRIC=CHANGE, METRIC one of S, R, sigma_bar and CHANGE a percent such as +20% or -30%"
        )
    };
    let (m, v) = text.split_once('=').ok_or_else(bad)?;
    let metric = match m.trim() {
        "S" | "s" => Metric::S,
        "R" | "r" => Metric::R,
        "sigma_bar" | "sigma-bar" => Metric::SigmaBar,
        _ => return Err(bad()),
    };
    let pct: f64 = v
        .trim()
        .trim_end_matches('%')
        .trim_start_matches('+')
        .parse()
        .map_err(|_| bad())?;
    if !pct.is_finite() || pct == 0.0 || pct <= -100.0 {
        anyhow::bail!("--detect {text:?}: the change must be non-zero and above -100%");
    }
    Ok(Change {
        label: format!("{}={:+}%", m.trim(), pct),
        metric,
        delta: pct / 100.0,
    })
}

/// How a model's requests are priced.
struct Pricing {
    name: String,
    interactive: Prices,
    batch: Option<Prices>,
    max_samples: u32,
    /// Input tokens of one persona request.
    tokens_per_request: f64,
}

/// One row of the grid.
#[derive(Debug, Clone, Serialize)]
struct Row {
    personas: usize,
    repetitions: usize,
    /// The pilot model whose prediction decides the row (the least power).
    model: String,
    #[serde(rename = "S")]
    s: f64,
    #[serde(rename = "R")]
    r: f64,
    #[serde(rename = "se_S")]
    se_s: f64,
    #[serde(rename = "se_R")]
    se_r: f64,
    se_sigma_bar: f64,
    /// The least power over the named changes.
    power: f64,
    power_by_change: std::collections::BTreeMap<String, f64>,
    /// Requests of the cheapest way (`choice`), for every priced model.
    requests: u64,
    requests_interactive: u64,
    requests_multi_sample: u64,
    cost_usd: Option<f64>,
    cost_interactive_usd: Option<f64>,
    cost_multi_sample_usd: Option<f64>,
    cost_batch_usd: Option<f64>,
    choice: &'static str,
    recommended: bool,
}

/// Mean characters of the papers' personas (ids 0-99 of the reference
/// personas), for request tokens when no spec gives the personas.
const PAPERS_PERSONA_CHARS: usize = 92;

pub fn plan(args: PlanArgs) -> anyhow::Result<()> {
    if !(args.power > 0.0 && args.power < 1.0) {
        anyhow::bail!(
            "--power {}: give a power between 0 and 1, e.g. 0.8",
            args.power
        );
    }
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        anyhow::bail!(
            "--alpha {}: give a level between 0 and 1, e.g. 0.05",
            args.alpha
        );
    }
    if let Some(&k) = args.repetitions.iter().find(|&&k| k < 2) {
        anyhow::bail!("--repetitions {k}: R needs at least 2 repetitions per cell");
    }
    if let Some(&n) = args.personas.iter().find(|&&n| n < 2) {
        anyhow::bail!("--personas {n}: S needs at least 2 personas");
    }
    let changes: Vec<Change> = args
        .detect
        .iter()
        .map(|d| parse_change(d))
        .collect::<anyhow::Result<_>>()?;
    let files = read_pilot(&args.pilot, &AnalyzeOptions::default())
        .with_context(|| format!("reading the pilot {}", args.pilot.display()))?;
    let files: Vec<_> = match &args.model {
        Some(key) => {
            let keys: Vec<&str> = files.iter().map(|f| f.key.as_str()).collect();
            let picked: Vec<_> = files.iter().filter(|f| &f.key == key).cloned().collect();
            if picked.is_empty() {
                anyhow::bail!(
                    "--model {key}: no sampling file of that key in {}; its keys are {}",
                    args.pilot.display(),
                    keys.join(", ")
                );
            }
            picked
        }
        None => files,
    };
    let mut pilots = Vec::new();
    for f in &files {
        let pilot = Pilot::new(&f.table, &f.personas, &f.items)
            .with_context(|| format!("pilot file {}", f.path.display()))?;
        if pilot.personas < 20 {
            eprintln!(
                "warning: {}: the pilot has {} personas; below 20 the variance components (and so the plan) are unreliable",
                f.path.display(),
                pilot.personas
            );
        }
        pilots.push((f.key.clone(), pilot));
    }
    let instrument = files[0].instrument.clone();
    let sweep = match &args.spec {
        Some(path) => Some(
            Sweep::load(path, KeyCheck::Skip)
                .with_context(|| format!("reading the spec {}", path.display()))?,
        ),
        None => None,
    };
    let pricing = pricing(&args, sweep.as_ref(), &files[0].key, &instrument)?;

    let mut rows = Vec::new();
    for &n in &args.personas {
        for &k in &args.repetitions {
            rows.push(grid_row(
                n,
                k,
                &pilots,
                &changes,
                args.alpha,
                &pricing,
                instrument.item_count(),
            ));
        }
    }
    // The cheapest design that reaches the power for every change: by cost
    // when every model is priced, else by requests.
    let priced = rows.iter().all(|r| r.cost_usd.is_some());
    let best = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.power >= args.power)
        .min_by(|(_, a), (_, b)| {
            let key = |r: &Row| {
                if priced {
                    r.cost_usd.unwrap_or(f64::MAX)
                } else {
                    r.requests as f64
                }
            };
            key(a).total_cmp(&key(b)).then(a.requests.cmp(&b.requests))
        })
        .map(|(i, _)| i);
    if let Some(i) = best {
        rows[i].recommended = true;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    print_table(
        &args,
        &rows,
        &changes,
        &pricing,
        &pilots,
        sweep.as_ref(),
        best,
    );
    Ok(())
}

/// The prediction and costs of one design.
fn grid_row(
    n: usize,
    k: usize,
    pilots: &[(String, Pilot)],
    changes: &[Change],
    alpha: f64,
    pricing: &[Pricing],
    items: usize,
) -> Row {
    let mut worst: Option<(
        f64,
        &str,
        Prediction,
        std::collections::BTreeMap<String, f64>,
    )> = None;
    for (key, pilot) in pilots {
        let p = pilot.predict(n, k);
        let by: std::collections::BTreeMap<String, f64> = changes
            .iter()
            .map(|c| {
                let (level, se) = match c.metric {
                    Metric::S => (p.s, p.se_s),
                    Metric::R => (p.r, p.se_r),
                    Metric::SigmaBar => (p.sigma_bar, p.se_sigma_bar),
                };
                (c.label.clone(), power(level, se, c.delta, alpha))
            })
            .collect();
        let least = by.values().copied().fold(1.0, f64::min);
        if worst.as_ref().is_none_or(|w| least < w.0) {
            worst = Some((least, key, p, by));
        }
    }
    let (least, key, p, by) = worst.expect("at least one pilot");
    let cells = (n * items) as u64;
    let per_sample = cells * k as u64;
    let mut req_multi = 0u64;
    let (mut c_int, mut c_multi, mut c_batch) = (Some(0.0), Some(0.0), Some(0.0));
    let add = |acc: &mut Option<f64>, x: Option<f64>| {
        *acc = match (*acc, x) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        }
    };
    for m in pricing {
        let per_cell = (k as u64).div_ceil(m.max_samples.max(1) as u64);
        let multi = cells * per_cell;
        req_multi += multi;
        let input = |requests: u64| (requests as f64 * m.tokens_per_request).round() as u64;
        add(
            &mut c_int,
            m.interactive.cost(input(per_sample), per_sample),
        );
        add(
            &mut c_multi,
            if m.max_samples > 1 {
                m.interactive.cost(input(multi), per_sample)
            } else {
                None
            },
        );
        add(
            &mut c_batch,
            m.batch.and_then(|b| b.cost(input(multi), per_sample)),
        );
    }
    let req_int = per_sample * pricing.len() as u64;
    let mut options = vec![("one request per sample", c_int, req_int)];
    if c_multi.is_some() {
        options.push(("multi-sample", c_multi, req_multi));
    }
    if c_batch.is_some() {
        options.push(("batch + multi-sample", c_batch, req_multi));
    }
    let (choice, cost, requests) = options
        .iter()
        .filter(|o| o.1.is_some())
        .min_by(|a, b| a.1.unwrap_or(f64::MAX).total_cmp(&b.1.unwrap_or(f64::MAX)))
        .copied()
        .unwrap_or(("one request per sample", None, req_int));
    Row {
        personas: n,
        repetitions: k,
        model: key.to_string(),
        s: p.s,
        r: p.r,
        se_s: p.se_s,
        se_r: p.se_r,
        se_sigma_bar: p.se_sigma_bar,
        power: least,
        power_by_change: by,
        requests,
        requests_interactive: req_int,
        requests_multi_sample: req_multi,
        cost_usd: cost,
        cost_interactive_usd: c_int,
        cost_multi_sample_usd: c_multi.filter(|_| pricing.iter().any(|m| m.max_samples > 1)),
        cost_batch_usd: c_batch,
        choice,
        recommended: false,
    }
}

/// The models that price a design: the spec's (each at its own prices and
/// settings), else one catalog entry (named, or the pilot key's), else an
/// unpriced stand-in that still counts requests.
fn pricing(
    args: &PlanArgs,
    sweep: Option<&Sweep>,
    key: &str,
    instrument: &Instrument,
) -> anyhow::Result<Vec<Pricing>> {
    if let Some(sweep) = sweep {
        let inst = sweep.spec.instrument().context("the spec's instrument")?;
        let sample: Vec<&String> = sweep.personas.iter().take(100).collect();
        let models: Vec<&ModelSpec> = sweep.spec.models.iter().collect();
        if models.is_empty() {
            anyhow::bail!("{}: the spec has no [[model]]", sweep.source.display());
        }
        return Ok(models
            .into_iter()
            .map(|m| {
                let tok = Tokenizer::for_model(m.provider, &m.model);
                let total: u64 = sample
                    .iter()
                    .flat_map(|p| {
                        inst.items
                            .iter()
                            .map(|it| tok.prompt_tokens(&inst.persona_prompt(p, it)))
                    })
                    .sum();
                let prompts = (sample.len() * inst.items.len()).max(1);
                let profile = m.profile();
                let batch = Prices::batch_of(m);
                Pricing {
                    name: m.key.clone(),
                    interactive: Prices::of(m),
                    batch: (profile.batch_supported != Some(false)
                        && (batch.input_per_mtok.is_some() || batch.output_per_mtok.is_some()))
                    .then_some(batch),
                    max_samples: profile.max_samples,
                    tokens_per_request: total as f64 / prompts as f64,
                }
            })
            .collect());
    }
    let catalog = moralsweep_common::catalog::builtin().map_err(|e| anyhow::anyhow!("{e}"))?;
    let entry = match &args.catalog {
        Some(name) => Some(catalog.named(name).ok_or_else(|| {
            anyhow::anyhow!("--catalog {name}: not in the catalog (`moralsweep models` lists it)")
        })?),
        None => catalog.models.iter().find(|e| e.id == key),
    };
    let persona = "x".repeat(PAPERS_PERSONA_CHARS);
    let tokens = instrument
        .items
        .iter()
        .map(|it| estimate_tokens(&instrument.persona_prompt(&persona, it)))
        .sum::<u64>() as f64
        / instrument.items.len().max(1) as f64;
    Ok(vec![match entry {
        Some(e) => Pricing {
            name: e.name(),
            interactive: Prices {
                input_per_mtok: e.input_per_mtok,
                output_per_mtok: e.output_per_mtok,
            },
            batch: e.batch.then_some(Prices {
                input_per_mtok: e.batch_input_per_mtok,
                output_per_mtok: e.batch_output_per_mtok,
            }),
            max_samples: e.max_samples,
            tokens_per_request: tokens,
        },
        None => Pricing {
            name: format!("{key} (no prices: give --catalog or --spec)"),
            interactive: Prices::default(),
            batch: None,
            max_samples: 1,
            tokens_per_request: tokens,
        },
    }])
}

fn print_table(
    args: &PlanArgs,
    rows: &[Row],
    changes: &[Change],
    pricing: &[Pricing],
    pilots: &[(String, Pilot)],
    sweep: Option<&Sweep>,
    best: Option<usize>,
) {
    for (key, p) in pilots {
        println!(
            "pilot {key}: {} personas x {} items, median {} ratings per cell",
            p.personas, p.items, p.median_runs
        );
    }
    println!(
        "priced as: {}",
        pricing
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let labels: Vec<&str> = changes.iter().map(|c| c.label.as_str()).collect();
    println!(
        "power to detect {} (two-sided, alpha {}), least over the changes{}",
        labels.join(", "),
        args.alpha,
        if pilots.len() > 1 {
            " and the pilot models"
        } else {
            ""
        }
    );
    println!();
    println!(
        "{:>8} {:>5} {:>7} {:>7} {:>7} {:>7} {:>6} {:>11} {:>12} {:<22}",
        "personas",
        "reps",
        "S",
        "se(S)",
        "R",
        "se(R)",
        "power",
        "requests",
        "cost USD",
        "cheapest way"
    );
    for (i, r) in rows.iter().enumerate() {
        println!(
            "{:>8} {:>5} {:>7.3} {:>7.4} {:>7.2} {:>7.3} {:>6.3} {:>11} {:>12} {:<22}{}",
            r.personas,
            r.repetitions,
            r.s,
            r.se_s,
            r.r,
            r.se_r,
            r.power,
            r.requests,
            r.cost_usd
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "-".into()),
            r.choice,
            if Some(i) == best {
                "  <- recommended"
            } else {
                ""
            }
        );
    }
    println!();
    match best {
        Some(i) => {
            let r = &rows[i];
            println!(
                "recommended: {} personas x {} repetitions (power {:.2} for every change; {} requests{})",
                r.personas,
                r.repetitions,
                r.power,
                r.requests,
                r.cost_usd.map(|c| format!(", {c:.2} USD via {}", r.choice)).unwrap_or_default()
            );
            if let Some(sweep) = sweep {
                println!("for {}:", sweep.source.display());
                println!("persona_count = {}", r.personas);
                println!("repetitions = {}", r.repetitions);
            }
        }
        None => {
            let top = rows.iter().map(|r| r.power).fold(0.0, f64::max);
            println!(
                "no design of the grid reaches power {} for every change (the best reaches {top:.2}); give larger --personas or --repetitions, or plan for a larger change",
                args.power
            );
        }
    }
}
