//! What the dry run checks besides the price: models the catalog does not
//! hold (with the closest known id), API keys the run would not find, and
//! why a model gets one sample per request. The run itself refuses the
//! first two only when it calls the provider; the dry run says so first.

use moralsweep_common::catalog::{self, SamplesPerRequest};
use moralsweep_common::provider::ProviderKind;
use moralsweep_common::{ModelSpec, Sweep};

use crate::providers::{self, ProviderError};

/// The providers the catalog describes: a model of one of them that it
/// does not hold is most likely misspelt.
fn catalog_providers(c: &catalog::Catalog) -> Vec<ProviderKind> {
    let mut p: Vec<ProviderKind> = c.models.iter().map(|m| m.provider).collect();
    p.sort_unstable();
    p.dedup();
    p
}

/// The catalog id of `provider` closest to `model` (by Damerau-Levenshtein
/// similarity), when one is close enough to be a likely misspelling.
pub fn closest_known(provider: ProviderKind, model: &str) -> Option<String> {
    let c = catalog::builtin().ok()?;
    c.models
        .iter()
        .filter(|m| m.provider == provider && !m.id.starts_with("ft:"))
        .map(|m| (strsim::normalized_damerau_levenshtein(model, &m.id), &m.id))
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, id)| id.clone())
}

/// A warning for a model of a catalogued provider that the catalog does
/// not hold: no price, no known caps, and the closest known id.
pub fn catalog_warning(m: &ModelSpec) -> Option<String> {
    let c = catalog::builtin().ok()?;
    if m.profile().catalog.is_some() || !catalog_providers(c).contains(&m.provider) {
        return None;
    }
    let hint = match closest_known(m.provider, &m.model) {
        Some(id) => format!("did you mean {id:?}? "),
        None => String::new(),
    };
    Some(format!(
        "model {:?}: {} model {:?} is not in the model catalog, so its price, multi-sample cap and capabilities are unknown; {hint}(`moralsweep models --provider {}` lists the known ones; a model the catalog lacks can give input_price_per_mtok, output_price_per_mtok and max_samples_per_request itself)",
        m.key, m.provider, m.model, m.provider
    ))
}

/// A warning when the run would find no API key for `m`: the message the
/// run gives when it builds the model's client (nothing is sent).
pub fn credential_warning(m: &ModelSpec) -> Option<String> {
    // The local and synthetic models need no key (and the local one would
    // load its weights here).
    if m.provider.in_process() {
        return None;
    }
    match providers::build(m) {
        Err(ProviderError::Fatal(msg)) if msg.contains("API key") || msg.contains("api_key") => {
            Some(format!("{msg} (the run would stop this model)"))
        }
        _ => None,
    }
}

/// Why `m` gets one sample per request at `repetitions` samples per cell,
/// when it does.
pub fn single_sample_reason(m: &ModelSpec, repetitions: u32) -> Option<String> {
    let profile = m.profile();
    if profile.samples_for(repetitions) > 1 {
        return None;
    }
    Some(if repetitions <= 1 {
        "repetitions = 1: one sample per cell".to_string()
    } else if profile.samples_per_request == SamplesPerRequest::Fixed(1) {
        "its spec says samples_per_request = 1".to_string()
    } else if m.max_samples_per_request == Some(1) {
        "its spec says max_samples_per_request = 1".to_string()
    } else if let Some(entry) = &profile.catalog {
        format!(
            "the catalog entry {entry} returns one sample per request (the provider has no multi-sample option for it)"
        )
    } else {
        format!(
            "{} model {:?} is not in the catalog, so whether its server honours several samples per request (`n`) is unknown; if it does, set max_samples_per_request in its [[model]] entry",
            m.provider, m.model
        )
    })
}

/// Every warning of the dry run of `sweep`, model by model (the judge of a
/// misalignment check too).
pub fn warnings(sweep: &Sweep) -> Vec<String> {
    let spec = &sweep.spec;
    let mut out = Vec::new();
    for m in spec.models.iter().chain(spec.judge.iter()) {
        out.extend(catalog_warning(m));
        out.extend(credential_warning(m));
    }
    out
}

/// Per model key, why it gets one sample per request (models that get
/// several are left out).
pub fn single_sample_notes(sweep: &Sweep) -> Vec<(String, String)> {
    let spec = &sweep.spec;
    let samples = spec.modes.iter().any(|m| {
        matches!(
            m,
            moralsweep_common::Mode::Persona | moralsweep_common::Mode::SelfMode
        )
    });
    if !samples {
        return Vec::new();
    }
    spec.models
        .iter()
        .filter_map(|m| Some((m.key.clone(), single_sample_reason(m, spec.repetitions)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(v: serde_json::Value) -> ModelSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_misspelt_model_gets_the_closest_known_id() {
        assert_eq!(
            closest_known(ProviderKind::OpenAi, "gpt-4.1-mimi").as_deref(),
            Some("gpt-4.1-mini")
        );
        assert_eq!(
            closest_known(ProviderKind::OpenAi, "entirely-different-thing"),
            None
        );
        let m =
            model(serde_json::json!({"key": "k", "provider": "openai", "model": "gpt-4.1-mimi"}));
        let w = catalog_warning(&m).unwrap();
        assert!(
            w.contains("\"gpt-4.1-mini\"") && w.contains("not in the model catalog"),
            "{w}"
        );
        let known =
            model(serde_json::json!({"key": "k", "provider": "openai", "model": "gpt-4.1-mini"}));
        assert_eq!(catalog_warning(&known), None);
        // The simulator and compatible servers are not in the catalog by design.
        let sim = model(serde_json::json!({"key": "k", "provider": "sim", "model": "x"}));
        assert_eq!(catalog_warning(&sim), None);
    }

    #[test]
    fn one_sample_per_request_says_why() {
        let anthropic = model(
            serde_json::json!({"key": "c", "provider": "anthropic", "model": "claude-haiku-4-5"}),
        );
        let why = single_sample_reason(&anthropic, 10).unwrap();
        assert!(why.contains("anthropic/claude-haiku-4-5"), "{why}");
        let compat = model(
            serde_json::json!({"key": "o", "provider": "openai-compatible", "model": "llama", "base_url": "http://127.0.0.1:1/v1"}),
        );
        let why = single_sample_reason(&compat, 10).unwrap();
        assert!(why.contains("max_samples_per_request"), "{why}");
        let fixed = model(
            serde_json::json!({"key": "g", "provider": "openai", "model": "gpt-4o", "samples_per_request": 1}),
        );
        assert!(single_sample_reason(&fixed, 10)
            .unwrap()
            .contains("samples_per_request = 1"));
        let multi = model(serde_json::json!({"key": "g", "provider": "openai", "model": "gpt-4o"}));
        assert_eq!(single_sample_reason(&multi, 10), None);
    }
}
