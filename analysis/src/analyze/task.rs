//! One task: the metrics of one model key's sampling files, one self file or one logprob file.

use super::*;
use crate::formats::{
    first_repeated_slot, fmt_float, fmt_temperature, is_provider_default, read_logprobs, FileKind,
    FormatError, RatingRow,
};
use crate::formats::{read_sampling_in, RowLimits, SamplingFile};
use crate::metrics::{
    align_runs, logprob_metrics, sampled_metrics_in, self_profile_in, BootstrapOptions, CellTable,
    Histogram, MetricsError, RunSets, ScopeMetrics,
};
use moralsweep_common::instrument::{Group, Instrument};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Reads a sampling or self file as `opts.instrument`, or else as the first
/// built-in instrument whose item ids and scale hold every row.
/// Rows already in memory are taken as they are when the file reader would
/// take every one of them.
pub(super) fn read_rated<'a>(
    f: &Source<'a>,
    self_mode: bool,
    opts: &AnalyzeOptions,
    part: &mut Partial,
) -> Result<(Cow<'a, SamplingFile>, Arc<Instrument>), AnalyzeError> {
    let read = |limits: &RowLimits| -> Result<Cow<'a, SamplingFile>, AnalyzeError> {
        Ok(match units::sampling_in_memory(f.rows, self_mode, limits) {
            Some(file) => Cow::Borrowed(file),
            None => Cow::Owned(read_sampling_in(&f.path, self_mode, limits)?),
        })
    };
    let (file, inst) = match &opts.instrument {
        Some(i) => (read(&RowLimits::of(i))?, i.clone()),
        None => {
            let file = read(&RowLimits::ANY)?;
            let max_item = file.rows.iter().map(|r| r.item).max().unwrap_or(1);
            let rows: Vec<(i64, i64)> = file
                .rows
                .iter()
                .map(|r| (r.item as i64, r.rating as i64))
                .collect();
            match Instrument::recognise(&rows) {
                Some(i) => (file, i),
                None => {
                    // The instrument with enough items names the first bad row.
                    if let Some(i) = Instrument::builtins()
                        .into_iter()
                        .find(|i| i.has_item(max_item as i64))
                    {
                        read_sampling_in(&f.path, self_mode, &RowLimits::of(&i))?;
                    }
                    let lo = file.rows.iter().map(|r| r.rating).filter(|&r| r >= 0).min();
                    let hi = file.rows.iter().map(|r| r.rating).max();
                    return Err(AnalyzeError::UnknownInstrument {
                        path: f.path.clone(),
                        max_item,
                        ratings: format!("{}-{}", lo.unwrap_or(-1), hi.unwrap_or(-1)),
                        builtins: Instrument::builtins()
                            .iter()
                            .map(|i| {
                                format!(
                                    "{} (items 1-{}, ratings {})",
                                    i.name,
                                    i.item_count(),
                                    i.scale.range()
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
        }
    };
    part.instruments.push((f.path.clone(), inst.clone()));
    Ok((file, inst))
}

pub(super) fn warn(part: &mut Partial, message: String) {
    tracing::warn!("{message}");
    part.warnings.push(message);
}

/// Ids as short ranges: `[1, 2, 3, 7]` -> "1-3, 7".
pub(super) fn id_ranges<T: Copy + Into<u64>>(ids: &[T]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let start: u64 = ids[i].into();
        let mut end = start;
        while i + 1 < ids.len() && ids[i + 1].into() == end + 1 {
            end += 1;
            i += 1;
        }
        parts.push(if end == start {
            start.to_string()
        } else if end == start + 1 {
            format!("{start}, {end}")
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

/// "item 5" or "items 5, 9-12".
pub(super) fn items_phrase(items: &[u8]) -> String {
    if items.len() == 1 {
        format!("item {}", items[0])
    } else {
        format!("items {}", id_ranges(items))
    }
}

/// Why persona index `pi` of `table` fails the persona filter over `items`.
pub(super) fn persona_gap(table: &CellTable, pi: usize, items: &[u8]) -> String {
    let (mut no_row, mut only_invalid) = (Vec::new(), Vec::new());
    for &q in items {
        if table.ratings(pi, q).is_empty() {
            if table.is_present(pi, q) {
                only_invalid.push(q);
            } else {
                no_row.push(q);
            }
        }
    }
    let mut why = Vec::new();
    if !no_row.is_empty() {
        why.push(format!("no row for {}", items_phrase(&no_row)));
    }
    if !only_invalid.is_empty() {
        why.push(format!(
            "only -1 ratings (no valid answer) for {}",
            items_phrase(&only_invalid)
        ));
    }
    why.join("; ")
}

/// A file's sort key of a rating row's slot.
pub(super) fn slot_key(r: &RatingRow) -> u128 {
    ((r.persona.unwrap_or(0) as u128) << 64) | ((r.item as u128) << 32) | r.run as u128
}

/// How many rows repeat an earlier row's slot.
pub(super) fn repeated_rows(rows: &[RatingRow]) -> usize {
    // Files come in slot order (ours and the papers'): one pass suffices.
    if rows.windows(2).all(|w| slot_key(&w[0]) < slot_key(&w[1])) {
        return 0;
    }
    let mut keys: Vec<u128> = rows.iter().map(slot_key).collect();
    keys.sort_unstable();
    keys.windows(2).filter(|w| w[0] == w[1]).count()
}

pub(super) fn slot_name(c: &moralsweep_common::slot::SlotCoord) -> String {
    match c.persona {
        Some(p) => format!("persona {p}, question {}, run_index {}", c.item, c.run),
        None => format!("question {}, run_index {}", c.item, c.run),
    }
}

/// Refuses a file without rows, and one that records a slot twice unless
/// `opts` counts repeats (then it warns).
pub(super) fn check_rating_rows(
    f: &FoundFile,
    rows: &[RatingRow],
    self_mode: bool,
    opts: &AnalyzeOptions,
    part: &mut Partial,
) -> Result<(), AnalyzeError> {
    if rows.is_empty() {
        return Err(AnalyzeError::NoRows {
            path: f.path.clone(),
        });
    }
    let repeats = repeated_rows(rows);
    if repeats == 0 {
        return Ok(());
    }
    match opts.repeated_slots {
        RepeatedSlots::Count => {
            warn(
                part,
                format!(
                    "{}: {repeats} row(s) repeat an earlier row's (persona, question, run_index) slot; every row counts as a rating of its cell",
                    f.path.display()
                ),
            );
            Ok(())
        }
        RepeatedSlots::Reject => match first_repeated_slot(&f.path, self_mode)? {
            Some((coord, first_line, line)) => Err(AnalyzeError::RepeatedSlot {
                path: f.path.clone(),
                slot: slot_name(&coord),
                first_line,
                line,
                repeats,
            }),
            // The file changed between the two reads.
            None => Err(AnalyzeError::Format(FormatError::Invalid {
                path: f.path.clone(),
                message: "the file changed while it was analysed; run again".into(),
            })),
        },
    }
}

/// The bootstrap settings of a task.
fn bootstrap_options(opts: &AnalyzeOptions) -> BootstrapOptions {
    BootstrapOptions {
        persona_draws: opts.bootstrap,
        rerun_draws: opts.rerun_bootstrap,
        seed: opts.seed,
    }
}

/// A row of `dropped.csv` about file `f`.
fn dropped_row(
    f: &FoundFile,
    temperature: Option<f64>,
    what: Dropped,
    id: Option<u32>,
    reason: String,
) -> DroppedRow {
    DroppedRow {
        model: f.key.clone(),
        temperature,
        source_file: f.relative.clone(),
        what,
        id,
        reason,
    }
}

pub(super) fn run_task(
    task: &Task,
    opts: &AnalyzeOptions,
    part: &mut Partial,
) -> Result<(), AnalyzeError> {
    match task {
        Task::SelfFile(f) => self_file(f, opts, part),
        Task::Logprob(f) => logprob_file(f, opts, part),
        Task::Sampling { key, files } => sampling_files(key, files, opts, part),
    }
}

/// A self file: the self profile, and the items without a valid rating.
fn self_file(f: &Source, opts: &AnalyzeOptions, part: &mut Partial) -> Result<(), AnalyzeError> {
    let (file, inst) = read_rated(f, true, opts, part)?;
    check_rating_rows(f, &file.rows, true, opts, part)?;
    let profile = self_profile_in(&inst, &file.rows);
    let temperature = match f.kind {
        FileKind::SelfRatings { temperature } => temperature,
        _ => None,
    };
    if profile.is_empty() {
        warn(
            part,
            format!(
                "{}: no valid self rating; no self profile",
                f.path.display()
            ),
        );
        part.dropped.push(dropped_row(
            f,
            temperature,
            Dropped::File,
            None,
            "no valid self rating (every row is -1)".into(),
        ));
    } else {
        let mut present = vec![false; inst.item_count()];
        let mut valid = vec![false; inst.item_count()];
        for r in &file.rows {
            present[r.item as usize - 1] = true;
            valid[r.item as usize - 1] |= r.rating >= 0;
        }
        for (q, (&present, &valid)) in present.iter().zip(&valid).enumerate() {
            if !valid {
                let reason = if present {
                    "only -1 ratings (no valid answer)"
                } else {
                    "no row in the file"
                };
                part.dropped.push(dropped_row(
                    f,
                    temperature,
                    Dropped::Item,
                    Some(q as u32 + 1),
                    reason.into(),
                ));
            }
        }
    }
    for p in profile {
        part.self_profiles.push(SelfProfileRow {
            model: f.key.clone(),
            family: opts.models.family(&f.key),
            variant: opts.models.variant(&f.key),
            self_file: f.relative.clone(),
            temperature,
            profile: p,
        });
    }
    Ok(())
}

/// A logprob file: the temperature curve, and what it leaves out.
fn logprob_file(f: &Source, opts: &AnalyzeOptions, part: &mut Partial) -> Result<(), AnalyzeError> {
    let boot = bootstrap_options(opts);
    let file = match units::logprobs_in_memory(f.rows) {
        Some(file) => Cow::Borrowed(file),
        None => Cow::Owned(read_logprobs(&f.path)?),
    };
    if file.rows.is_empty() {
        return Err(AnalyzeError::NoRows {
            path: f.path.clone(),
        });
    }
    let mut first_line: BTreeMap<(u32, u8), u64> = BTreeMap::new();
    let mut repeat: Option<(u32, u8, u64, u64)> = None;
    let mut repeats = 0;
    for r in &file.rows {
        if let Some(&first) = first_line.get(&(r.persona, r.item)) {
            repeats += 1;
            repeat.get_or_insert((r.persona, r.item, first, r.line));
        } else {
            first_line.insert((r.persona, r.item), r.line);
        }
    }
    if let Some((p, q, first, line)) = repeat {
        if opts.repeated_slots == RepeatedSlots::Reject {
            return Err(AnalyzeError::RepeatedSlot {
                path: f.path.clone(),
                slot: format!("persona {p}, question {q}"),
                first_line: first,
                line,
                repeats,
            });
        }
    }
    let mut items_of: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for &(p, q) in first_line.keys() {
        items_of.entry(p).or_default().push(q);
    }
    drop(first_line);
    let mut items: Vec<u8> = items_of.values().flatten().copied().collect();
    items.sort_unstable();
    items.dedup();
    let result = match logprob_metrics(&file, &opts.temperatures, &boot, &f.key) {
        Ok(r) => r,
        Err(MetricsError::BadTemperature(t)) => return Err(AnalyzeError::BadTemperature(t)),
        Err(e) => {
            warn(
                part,
                format!("{}: no logprob metrics: {e}", f.path.display()),
            );
            part.dropped
                .push(dropped_row(f, None, Dropped::File, None, e.to_string()));
            return Ok(());
        }
    };
    drop(file);
    for q in 1..=Instrument::mfq30().item_count() as u8 {
        if items.binary_search(&q).is_err() {
            part.dropped.push(dropped_row(
                f,
                None,
                Dropped::Item,
                Some(q as u32),
                "no row in the file".into(),
            ));
        }
    }
    for &p in &result.dropped_personas {
        let have = items_of.get(&p).map(Vec::as_slice).unwrap_or(&[]);
        let missing: Vec<u8> = items
            .iter()
            .copied()
            .filter(|q| have.binary_search(q).is_err())
            .collect();
        part.dropped.push(dropped_row(
            f,
            None,
            Dropped::Persona,
            Some(p),
            format!("no row for {}", items_phrase(&missing)),
        ));
    }
    if !result.dropped_personas.is_empty() {
        warn(
            part,
            format!(
                "{}: personas {:?} lack a row for some item and are left out",
                f.path.display(),
                result.dropped_personas
            ),
        );
    }
    if result.repeated_rows > 0 {
        warn(
            part,
            format!(
                "{}: {} (persona, item) pairs have more than one row; the last row of each counts",
                f.path.display(),
                result.repeated_rows
            ),
        );
    }
    for point in result.points {
        if point.sigma_bar == 0.0 {
            warn(
                part,
                format!(
                    "{} at T={}: sigma_bar is 0, so R is infinite",
                    f.key,
                    fmt_float(point.temperature)
                ),
            );
        }
        part.curves.push(CurveRow {
            model: f.key.clone(),
            family: opts.models.family(&f.key),
            variant: opts.models.variant(&f.key),
            point,
            source_file: f.relative.clone(),
        });
    }
    Ok(())
}

/// One sampling file read: its rows' cells and the item and persona sets
/// it keeps on its own.
type Run<'a> = (Source<'a>, f64, Arc<CellTable>, RunSets);

/// The sampling files of one model key (one per temperature): their
/// distributions, then their metrics on the persona and item sets they
/// share (the provider-default files apart from the others).
fn sampling_files(
    key: &str,
    files: &[Source],
    opts: &AnalyzeOptions,
    part: &mut Partial,
) -> Result<(), AnalyzeError> {
    let boot = bootstrap_options(opts);
    let (mut runs, inst) = sampling_runs(key, files, opts, part)?;
    runs.sort_by(|a, b| a.1.total_cmp(&b.1));
    // Files sampled at the provider's default temperature are kept
    // apart: aligned on their own persona set, never with the
    // temperature-controlled files of the same key.
    let (default_runs, runs): (Vec<_>, Vec<_>) =
        runs.into_iter().partition(|r| is_provider_default(r.1));
    let inst = inst.unwrap_or_else(Instrument::mfq30);
    for runs in [default_runs, runs] {
        shared_set_metrics(key, &runs, &inst, opts, &boot, part);
    }
    Ok(())
}

/// Reads each sampling file of a key: its distributions and what it
/// leaves out on its own; the files with their cells, and the instrument
/// they were all read as.
fn sampling_runs<'a>(
    key: &str,
    files: &[Source<'a>],
    opts: &AnalyzeOptions,
    part: &mut Partial,
) -> Result<(Vec<Run<'a>>, Option<Arc<Instrument>>), AnalyzeError> {
    let mut runs = Vec::new();
    let mut inst: Option<Arc<Instrument>> = None;
    for f in files {
        let temperature = match f.kind {
            FileKind::Sampling { temperature } => temperature,
            _ => continue,
        };
        let t = Some(temperature);
        let (data, this) = read_rated(f, false, opts, part)?;
        let first = inst.get_or_insert_with(|| this.clone());
        if first.name != this.name {
            return Err(AnalyzeError::MixedInstruments {
                first: files[0].path.clone(),
                first_instrument: first.name.clone(),
                second: f.path.clone(),
                second_instrument: this.name.clone(),
            });
        }
        check_rating_rows(f, &data.rows, false, opts, part)?;
        // Rating distributions, overall and per group.
        let mut overall = Histogram::new(this.scale);
        let mut groups: Vec<Histogram> = vec![Histogram::new(this.scale); this.groups.len()];
        let group_of: Vec<usize> = this
            .items
            .iter()
            .map(|it| this.groups.iter().position(|g| *g == it.group).unwrap_or(0))
            .collect();
        for r in &data.rows {
            overall.add(r.rating);
            if let Some(&g) = group_of.get(r.item as usize - 1) {
                groups[g].add(r.rating);
            }
        }
        let dist = |group: Option<Group>, histogram: Histogram| DistributionRow {
            model: key.to_string(),
            temperature,
            group,
            family: opts.models.family(key),
            variant: opts.models.variant(key),
            histogram,
            base_model: None,
            kl_from_base_bits: None,
            source_file: f.relative.clone(),
        };
        part.distributions.push(dist(None, overall));
        for (g, h) in this.groups.iter().zip(groups) {
            if h.total() > 0 {
                part.distributions.push(dist(Some(Group(g.clone())), h));
            }
        }
        let table = Arc::new(CellTable::from_rows(
            data.rows
                .iter()
                .map(|r| (r.persona.unwrap_or(0), r.item, r.rating)),
        ));
        drop(data);
        let items = table.items();
        for q in 1..=this.item_count() as u8 {
            if items.binary_search(&q).is_err() {
                part.dropped.push(dropped_row(
                    f,
                    t,
                    Dropped::Item,
                    Some(q as u32),
                    "no row in the file".into(),
                ));
            }
        }
        let kept = table.kept_personas(&items);
        for (pi, &p) in table.personas.iter().enumerate() {
            if kept.binary_search(&p).is_err() {
                part.dropped.push(dropped_row(
                    f,
                    t,
                    Dropped::Persona,
                    Some(p),
                    persona_gap(&table, pi, &items),
                ));
            }
        }
        if kept.is_empty() {
            warn(
                part,
                format!(
                    "{}: no persona has a valid rating for every item; file left out",
                    f.path.display()
                ),
            );
            part.dropped.push(dropped_row(
                f,
                t,
                Dropped::File,
                None,
                "no persona has a valid rating for every item".into(),
            ));
        }
        runs.push((*f, temperature, table, RunSets { items, kept }));
    }
    Ok((runs, inst))
}

/// The metrics of one group of a key's files on the items and personas
/// they all keep, and what that alignment leaves out of each.
fn shared_set_metrics(
    key: &str,
    runs: &[Run],
    inst: &Instrument,
    opts: &AnalyzeOptions,
    boot: &BootstrapOptions,
    part: &mut Partial,
) {
    let family = opts.models.family(key);
    let variant = opts.models.variant(key);
    if runs.is_empty() {
        return;
    }
    let sets: Vec<RunSets> = runs.iter().map(|r| r.3.clone()).collect();
    let (items, personas) = align_runs(&sets, ALIGNMENT_MIN_PERSONAS);
    if items.is_empty() || personas.is_empty() {
        warn(
            part,
            format!("model {key}: no persona is kept in all its files; no metrics"),
        );
        for (f, temperature, _, sets) in runs {
            if !sets.kept.is_empty() {
                part.dropped.push(dropped_row(
                    f,
                    Some(*temperature),
                    Dropped::File,
                    None,
                    format!("no persona is kept in all the files of model {key}"),
                ));
            }
        }
        return;
    }
    for (i, (f, temperature, table, sets)) in runs.iter().enumerate() {
        if sets.kept.is_empty() {
            continue;
        }
        let t = Some(*temperature);
        let label = format!("{key}|{}", fmt_float(*temperature));
        let result = match sampled_metrics_in(inst, table, &personas, &items, boot, &label) {
            Ok(r) => r,
            Err(e) => {
                warn(
                    part,
                    format!(
                        "{}: left out: {e} (the persona set shared with the model's other temperatures is not complete in this file)",
                        f.path.display()
                    ),
                );
                part.dropped.push(dropped_row(
                    f,
                    t,
                    Dropped::File,
                    None,
                    format!("{e}: the persona set shared with the model's other temperatures is not complete in this file"),
                ));
                continue;
            }
        };
        // What the alignment with the model's other files left out.
        let others = |has: &dyn Fn(&RunSets) -> bool| -> String {
            runs.iter()
                .enumerate()
                .filter(|(j, r)| *j != i && !r.3.kept.is_empty() && !has(&r.3))
                .map(|(_, r)| r.0.relative.clone())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for &q in &sets.items {
            if items.binary_search(&q).is_err() {
                part.dropped.push(dropped_row(
                    f,
                    t,
                    Dropped::Item,
                    Some(q as u32),
                    format!(
                        "not in {} (the model's files at several temperatures share one item set)",
                        others(&|r: &RunSets| r.items.contains(&q))
                    ),
                ));
            }
        }
        for &p in &sets.kept {
            if personas.binary_search(&p).is_err() {
                part.dropped.push(dropped_row(
                    f,
                    t,
                    Dropped::Persona,
                    Some(p),
                    format!(
                        "kept here but not in {} (the model's files at several temperatures share one persona set)",
                        others(&|r: &RunSets| r.kept.binary_search(&p).is_ok())
                    ),
                ));
            }
        }
        if result.overall.sigma_bar == 0.0 {
            warn(
                part,
                format!(
                    "{key} at T={}: sigma_bar is 0 (every cell is constant), so R is infinite",
                    fmt_temperature(*temperature)
                ),
            );
        }
        let row = |foundation: Option<Group>, m: ScopeMetrics, items: Vec<u8>| MetricRow {
            model: key.to_string(),
            temperature: *temperature,
            foundation,
            metrics: m,
            family: family.clone(),
            variant: variant.clone(),
            retained_personas: personas.clone(),
            retained_items: items,
            source_file: f.relative.clone(),
        };
        part.overall.push(row(None, result.overall, items.clone()));
        part.tables.push(ComparedTable {
            model: key.to_string(),
            temperature: *temperature,
            table: table.clone(),
        });
        for (g, m) in result.per_group {
            let fitems: Vec<u8> = items
                .iter()
                .copied()
                .filter(|&q| inst.item(q).is_some_and(|it| it.group == g))
                .collect();
            part.per_foundation.push(row(Some(Group(g)), m, fitems));
        }
    }
}
