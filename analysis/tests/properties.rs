//! Property tests of the metrics engine's invariants (issue 2):
//! S = 0 when every persona answers alike; sigma_bar = 0 when every cell is
//! constant; S and sigma_bar do not depend on the order of personas, items
//! or rows; the bootstrap errors shrink to 0 as the data become constant;
//! the same seed gives the same numbers. Point estimates are also checked
//! against a direct, unoptimised transcription of METHOD.md.

use moralsweep_analysis::metrics::{
    sampled_metrics, BootstrapOptions, CellTable, SampledResult, ScopeMetrics,
};
use moralsweep_common::ITEMS;
use proptest::prelude::*;

/// Rows (persona, item, rating).
type Rows = Vec<(u32, u8, i8)>;

fn opts(seed: u64) -> BootstrapOptions {
    BootstrapOptions {
        persona_draws: 60,
        rerun_draws: 40,
        seed,
    }
}

fn analyse(rows: &Rows, seed: u64) -> Option<SampledResult> {
    let table = CellTable::from_rows(rows.iter().copied());
    let items = table.items();
    let kept = table.kept_personas(&items);
    sampled_metrics(&table, &kept, &items, &opts(seed), "prop").ok()
}

fn all_items() -> Vec<u8> {
    (1..=30).collect()
}

/// One persona's answers: for each of the 30 items, 1-6 ratings 0-5.
fn profile() -> impl Strategy<Value = Vec<Vec<i8>>> {
    prop::collection::vec(prop::collection::vec(0i8..=5, 1..=6), 30)
}

/// Several personas with their own answers, some -1 ratings mixed in.
fn dataset() -> impl Strategy<Value = Rows> {
    (2usize..8).prop_flat_map(|n| {
        prop::collection::vec(
            prop::collection::vec(prop::collection::vec(-1i8..=5, 1..=5), 30),
            n,
        )
        .prop_map(|personas| {
            let mut rows = Vec::new();
            for (p, items) in personas.iter().enumerate() {
                for (q, ratings) in items.iter().enumerate() {
                    for &r in ratings {
                        rows.push((p as u32 * 3 + 1, q as u8 + 1, r));
                    }
                }
            }
            rows
        })
    })
}

fn rows_of(personas: &[(u32, Vec<Vec<i8>>)]) -> Rows {
    let mut rows = Vec::new();
    for (p, items) in personas {
        for (q, ratings) in items.iter().enumerate() {
            for &r in ratings {
                rows.push((*p, q as u8 + 1, r));
            }
        }
    }
    rows
}

fn all_se(m: &ScopeMetrics) -> [f64; 4] {
    [
        m.sigma_bar_se_persona,
        m.sigma_bar_se_response,
        m.s_se_persona,
        m.s_se_response,
    ]
}

/// METHOD.md written out directly: cells, filter, sigma_bar, S.
fn reference_point(rows: &Rows, items: &[u8]) -> Option<(f64, f64)> {
    use std::collections::BTreeMap;
    let mut cells: BTreeMap<(u32, u8), Vec<f64>> = BTreeMap::new();
    let mut personas = std::collections::BTreeSet::new();
    for &(p, q, r) in rows {
        personas.insert(p);
        let cell = cells.entry((p, q)).or_default();
        if r >= 0 {
            cell.push(r as f64);
        }
    }
    let kept: Vec<u32> = personas
        .into_iter()
        .filter(|p| {
            items
                .iter()
                .all(|q| cells.get(&(*p, *q)).is_some_and(|c| !c.is_empty()))
        })
        .collect();
    if kept.len() < 2 {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let sd = |v: &[f64]| {
        if v.len() < 2 {
            0.0
        } else {
            let m = mean(v);
            (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
        }
    };
    let mut sigmas = Vec::new();
    let mut taus = Vec::new();
    for &q in items {
        let mus: Vec<f64> = kept.iter().map(|p| mean(&cells[&(*p, q)])).collect();
        taus.push(sd(&mus));
        for p in &kept {
            sigmas.push(sd(&cells[&(*p, q)]));
        }
    }
    Some((mean(&sigmas), mean(&taus)))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + b.abs())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn point_estimates_follow_the_method(rows in dataset()) {
        let items = all_items();
        let want = reference_point(&rows, &items);
        let got = analyse(&rows, 1);
        match (want, got) {
            (None, None) => {}
            (Some((sb, s)), Some(r)) => {
                prop_assert!(close(r.overall.sigma_bar, sb), "{} vs {sb}", r.overall.sigma_bar);
                prop_assert!(close(r.overall.s, s), "{} vs {s}", r.overall.s);
                for (f, m) in &r.per_foundation {
                    let f_items: Vec<u8> = ITEMS.iter().filter(|i| i.foundation == *f).map(|i| i.id).collect();
                    let table = CellTable::from_rows(rows.iter().copied());
                    let kept = table.kept_personas(&items);
                    let kept_rows: Rows = rows.iter().copied().filter(|r| kept.contains(&r.0)).collect();
                    let (fsb, fs) = reference_point(&kept_rows, &f_items).unwrap();
                    prop_assert!(close(m.sigma_bar, fsb) && close(m.s, fs), "{f}");
                }
            }
            (w, g) => prop_assert!(false, "reference {w:?} vs engine {:?}", g.map(|g| g.overall)),
        }
    }

    #[test]
    fn s_is_zero_when_every_persona_answers_alike(answers in profile(), n in 2u32..12) {
        let personas: Vec<(u32, Vec<Vec<i8>>)> = (0..n).map(|p| (p * 7, answers.clone())).collect();
        let r = analyse(&rows_of(&personas), 3).unwrap();
        prop_assert!(r.overall.s.abs() < 1e-12, "S = {}", r.overall.s);
        prop_assert!(r.overall.s_se_persona.abs() < 1e-12);
        for (_, m) in &r.per_foundation {
            prop_assert!(m.s.abs() < 1e-12);
        }
    }

    #[test]
    fn sigma_bar_is_zero_when_every_cell_is_constant(
        values in prop::collection::vec(prop::collection::vec(0i8..=5, 30), 2..10),
        k in 1usize..12,
    ) {
        let personas: Vec<(u32, Vec<Vec<i8>>)> = values
            .iter()
            .enumerate()
            .map(|(p, v)| (p as u32, v.iter().map(|&x| vec![x; k]).collect()))
            .collect();
        let r = analyse(&rows_of(&personas), 4).unwrap();
        prop_assert_eq!(r.overall.sigma_bar, 0.0);
        prop_assert!(r.overall.r().is_infinite());
        prop_assert_eq!(r.overall.r_se(), 0.0);
        prop_assert_eq!(r.overall.sigma_bar_se_persona, 0.0);
        prop_assert_eq!(r.overall.sigma_bar_se_response, 0.0);
        prop_assert_eq!(r.overall.s_se_response, 0.0);
    }

    #[test]
    fn invariant_under_reordering(rows in dataset(), seed in any::<u64>()) {
        let Some(base) = analyse(&rows, 5) else { return Ok(()) };
        // Rows in another order.
        let mut shuffled = rows.clone();
        let len = shuffled.len();
        let mut x = seed | 1;
        for i in (1..len).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let r = analyse(&shuffled, 5).unwrap();
        prop_assert!(close(r.overall.s, base.overall.s) && close(r.overall.sigma_bar, base.overall.sigma_bar));
        // Personas relabelled in reverse order.
        let max = rows.iter().map(|r| r.0).max().unwrap();
        let relabelled: Rows = rows.iter().map(|&(p, q, v)| (max - p + 100, q, v)).collect();
        let r = analyse(&relabelled, 5).unwrap();
        prop_assert!(close(r.overall.s, base.overall.s) && close(r.overall.sigma_bar, base.overall.sigma_bar));
        // Items permuted: the overall scope is a mean over all items.
        let perm: Vec<u8> = (0..30u8).map(|q| ((q as u64 * 7 + seed % 30) % 30) as u8 + 1).collect();
        let permuted: Rows = rows.iter().map(|&(p, q, v)| (p, perm[q as usize - 1], v)).collect();
        let r = analyse(&permuted, 5).unwrap();
        prop_assert!(close(r.overall.s, base.overall.s) && close(r.overall.sigma_bar, base.overall.sigma_bar));
    }

    /// With every persona answering one constant profile plus `m` deviating
    /// ratings, every bootstrap value lies in a range that shrinks with m:
    /// sigma_bar in [0, 3.6 m / Q] for persona draws (a persona can be drawn
    /// n times) and [0, 3.6 m / (n Q)] for rerun draws (3.6 bounds a cell's
    /// standard deviation), S in [0, 5 sqrt(2) m / (k Q)]. A sample standard
    /// deviation is at most half the range times sqrt(B / (B - 1)), so the
    /// errors go to 0 with m, and are exactly 0 at m = 0.
    #[test]
    fn bootstrap_errors_shrink_as_data_become_constant(
        base in prop::collection::vec(0i8..=5, 30),
        n in 2u32..10,
        deviants in prop::collection::vec((0u32..10, 0u8..30, 0i8..=5), 0..4),
    ) {
        let k = 6usize;
        let mut personas: Vec<(u32, Vec<Vec<i8>>)> = (0..n)
            .map(|p| (p, base.iter().map(|&x| vec![x; k]).collect()))
            .collect();
        let mut m = 0usize;
        for (p, q, v) in &deviants {
            let p = (*p % n) as usize;
            let cell = &mut personas[p].1[*q as usize];
            if cell[0] != *v {
                cell[0] = *v;
                m += 1;
            }
        }
        let r = analyse(&rows_of(&personas), 6).unwrap();
        let nq = 30.0;
        let f = 0.5 * 1.02;
        let m = m as f64;
        let sigma_persona = f * 3.6 * m / nq + 1e-12;
        let sigma_rerun = f * 3.6 * m / (n as f64 * nq) + 1e-12;
        let s_bound = f * 5.0 * 2f64.sqrt() * m / (k as f64 * nq) + 1e-12;
        let o = &r.overall;
        prop_assert!(o.sigma_bar_se_persona <= sigma_persona && o.sigma_bar_se_response <= sigma_rerun,
            "m={m}: {:?} > {sigma_persona} / {sigma_rerun}", all_se(o));
        prop_assert!(o.s_se_persona <= s_bound && o.s_se_response <= s_bound,
            "m={m}: {:?} > {s_bound}", all_se(o));
        if m == 0.0 {
            prop_assert_eq!(all_se(o), [0.0; 4]);
        }
    }

    #[test]
    fn same_seed_same_numbers(rows in dataset(), seed in any::<u64>()) {
        let a = analyse(&rows, seed);
        let b = analyse(&rows, seed);
        prop_assert_eq!(a, b);
    }
}
