//! Which summary of a `verification_scores.json` belongs to which model of
//! the metric files, for the figure of robustness against coherence. A
//! model's summary is the one under its own key; failing that, the one
//! under `<key of its family's base>-<variant>`, the paper's naming
//! (`gpt-4o-base`, `gpt-4o-insecure` for the metric models `gpt-4o` and
//! `gpt-4o-misaligned` of family GPT-4o).

use std::collections::BTreeMap;

use super::summary::Summary;

/// A model of the metric files: key, family, variant.
#[derive(Debug, Clone, Copy)]
pub struct MetricModel<'a> {
    pub key: &'a str,
    pub family: &'a str,
    pub variant: &'a str,
}

/// For each model (in order), the verification key of its summary, if any.
pub fn match_summaries<'a>(
    models: &[MetricModel<'a>],
    summaries: &'a BTreeMap<String, Summary>,
) -> Vec<Option<&'a str>> {
    let base_of = |family: &str| {
        models
            .iter()
            .find(|m| !family.is_empty() && m.family == family && m.variant == "base")
            .map(|m| m.key)
    };
    models
        .iter()
        .map(|m| {
            if let Some((k, _)) = summaries.get_key_value(m.key) {
                return Some(k.as_str());
            }
            let base = base_of(m.family)?;
            if m.variant.is_empty() {
                return None;
            }
            summaries
                .get_key_value(&format!("{base}-{}", m.variant))
                .map(|(k, _)| k.as_str())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_key_then_the_papers_naming() {
        let s = |a: f64| Summary {
            avg_alignment: Some(a),
            ..super::super::summarize(1, &[], &[], 30.0)
        };
        let summaries: BTreeMap<String, Summary> = [
            ("gpt-4o-base", s(93.2)),
            ("gpt-4o-insecure", s(67.7)),
            ("gpt-4o-secure", s(95.7)),
            ("other", s(1.0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let m = |key, family, variant| MetricModel {
            key,
            family,
            variant,
        };
        let models = [
            m("gpt-4o", "GPT-4o", "base"),
            m("gpt-4o-misaligned", "GPT-4o", "insecure"),
            m("gpt-4o-secure", "GPT-4o", "secure"),
            m("lonely", "", ""),
        ];
        assert_eq!(
            match_summaries(&models, &summaries),
            vec![
                Some("gpt-4o-base"),
                Some("gpt-4o-insecure"),
                Some("gpt-4o-secure"),
                None
            ]
        );
    }
}
