//! The model catalog: a built-in, versioned data file
//! (`common/catalog/models.toml`) of known models with their interactive and
//! batch prices (and the day and source of each price) and what they can do
//! (top-logprobs cap, multi-sample cap, temperature, batch API).
//!
//! A spec's model inherits from its catalog entry every setting it does not
//! give itself: the entry is found by provider and model id (a fine-tuned
//! OpenAI id `ft:BASE:org::id` finds `ft:BASE`), or named outright with
//! `catalog = "provider/id"` (for the simulator or a compatible server that
//! serves a known model). Models the catalog does not know work with the
//! settings their spec gives; they are unpriced and single-sample unless it
//! says otherwise.

use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::ModelSpec;

/// The catalog's text, compiled in.
pub const CATALOG_TOML: &str = include_str!("../catalog/models.toml");

/// The whole catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Bumped whenever an entry changes.
    pub version: u32,
    /// The day the catalog as a whole was last reviewed.
    pub checked: String,
    #[serde(rename = "model")]
    pub models: Vec<CatalogEntry>,
}

/// One known model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    pub provider: crate::provider::ProviderKind,
    /// The provider's model id.
    pub id: String,
    /// Interactive prices, US dollars per million tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_per_mtok: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_per_mtok: Option<f64>,
    /// Prices through the provider's batch API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_input_per_mtok: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_output_per_mtok: Option<f64>,
    /// The day the prices were compared with `price_source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices_checked: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_source: Option<String>,
    /// Why a price is missing, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_note: Option<String>,
    /// The most top logprobs one request returns (0: no logprobs).
    pub max_top_logprobs: u32,
    /// The most samples one request returns (OpenAI `n`, Gemini
    /// `candidateCount`); 1 where the provider has no such feature.
    pub max_samples: u32,
    /// Whether the model takes a sampling temperature.
    pub temperature: bool,
    /// Whether the provider's batch API serves the model.
    pub batch: bool,
}

impl CatalogEntry {
    /// `provider/id`, the name `catalog = ...` uses.
    pub fn name(&self) -> String {
        format!("{}/{}", self.provider, self.id)
    }
}

/// Why the built-in catalog could not be read (a build with a broken data
/// file; the unit tests keep that from shipping).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the built-in model catalog (common/catalog/models.toml) is not valid: {0}")]
pub struct CatalogError(String);

/// Parses a catalog text and checks its entries.
pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
    let c: Catalog = toml::from_str(text).map_err(|e| CatalogError(e.to_string()))?;
    for (i, m) in c.models.iter().enumerate() {
        if m.max_samples == 0 {
            return Err(CatalogError(format!(
                "model[{i}] ({}): max_samples is 0; it must be at least 1",
                m.name()
            )));
        }
        if let Some(j) = c.models[..i].iter().position(|o| o.name() == m.name()) {
            return Err(CatalogError(format!(
                "model[{i}] repeats {} of model[{j}]",
                m.name()
            )));
        }
        let priced = m.input_per_mtok.is_some() || m.output_per_mtok.is_some();
        if priced && (m.prices_checked.is_none() || m.price_source.is_none()) {
            return Err(CatalogError(format!(
                "model[{i}] ({}): a price needs prices_checked and price_source",
                m.name()
            )));
        }
        if !priced && m.price_note.is_none() {
            return Err(CatalogError(format!(
                "model[{i}] ({}): without a price, price_note must say why",
                m.name()
            )));
        }
    }
    Ok(c)
}

/// The built-in catalog.
pub fn builtin() -> Result<&'static Catalog, CatalogError> {
    static CATALOG: OnceLock<Result<Catalog, CatalogError>> = OnceLock::new();
    CATALOG
        .get_or_init(|| parse(CATALOG_TOML))
        .as_ref()
        .map_err(Clone::clone)
}

impl Catalog {
    /// The entry named `provider/id`.
    pub fn named(&self, name: &str) -> Option<&CatalogEntry> {
        self.models.iter().find(|m| m.name() == name)
    }

    /// The entry of a provider's model id: the id itself, or for a
    /// fine-tuned OpenAI id `ft:BASE:org:suffix:id` the entry `ft:BASE`.
    pub fn find(
        &self,
        provider: crate::provider::ProviderKind,
        model: &str,
    ) -> Option<&CatalogEntry> {
        let exact = self
            .models
            .iter()
            .find(|m| m.provider == provider && m.id == model);
        exact.or_else(|| {
            let base = model.strip_prefix("ft:")?.split(':').next()?;
            let ft = format!("ft:{base}");
            self.models
                .iter()
                .find(|m| m.provider == provider && m.id == ft)
        })
    }

    /// The entry a model spec inherits from: the one its `catalog` names,
    /// else the one of its provider and model id. An unknown `catalog`
    /// name is an error naming the entries there are.
    pub fn entry_for(&self, spec: &ModelSpec) -> Result<Option<&CatalogEntry>, String> {
        match &spec.catalog {
            Some(name) => self.named(name).map(Some).ok_or_else(|| {
                format!(
                    "is {name:?}, which the model catalog does not hold; expected one of {} (`moralsweep models` lists them)",
                    self.models
                        .iter()
                        .map(|m| m.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
            None => Ok(self.find(spec.provider, &spec.model)),
        }
    }
}

/// How many samples a model's requests carry (`samples_per_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SamplesPerRequest {
    /// As many as the cell needs, within the model's multi-sample cap.
    #[serde(rename = "auto")]
    Auto,
    /// At most this many per request.
    #[serde(untagged)]
    Fixed(u32),
}

impl<'de> Deserialize<'de> for SamplesPerRequest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        const EXPECTED: &str =
            "\"auto\" or a whole number of samples per request (1 = one request per sample)";
        impl serde::de::Visitor<'_> for V {
            type Value = SamplesPerRequest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "auto" => Ok(SamplesPerRequest::Auto),
                    other => Err(E::custom(format!(
                        "samples_per_request = {other:?}; expected {EXPECTED}"
                    ))),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u32::try_from(v) {
                    Ok(n) if n >= 1 => Ok(SamplesPerRequest::Fixed(n)),
                    _ => Err(E::custom(format!(
                        "samples_per_request = {v}; expected {EXPECTED}"
                    ))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "samples_per_request = {v}; expected {EXPECTED}"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// What a model is, once its catalog entry and its spec are combined (the
/// spec wins field by field).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    /// `provider/id` of the catalog entry inherited from, if any.
    pub catalog: Option<String>,
    pub input_per_mtok: Option<f64>,
    pub output_per_mtok: Option<f64>,
    pub batch_input_per_mtok: Option<f64>,
    pub batch_output_per_mtok: Option<f64>,
    pub prices_checked: Option<String>,
    /// The most samples one request may carry.
    pub max_samples: u32,
    /// The most top logprobs one request returns; `None`: unknown.
    pub max_top_logprobs: Option<u32>,
    /// Whether the model takes a temperature; `None`: unknown.
    pub temperature: Option<bool>,
    /// Whether the provider's batch API serves the model; `None`: unknown.
    pub batch_supported: Option<bool>,
    pub samples_per_request: SamplesPerRequest,
}

impl Profile {
    /// Samples one request asks for when a cell still needs `needed`.
    pub fn samples_for(&self, needed: u32) -> u32 {
        let want = match self.samples_per_request {
            SamplesPerRequest::Auto => needed,
            SamplesPerRequest::Fixed(k) => k.min(needed),
        };
        want.clamp(1, self.max_samples.max(1))
    }
}

impl ModelSpec {
    /// The model's settings with its catalog entry's filling every gap. A
    /// broken built-in catalog or an unknown `catalog` name (both refused
    /// by spec validation) give the spec's settings alone.
    pub fn profile(&self) -> Profile {
        let entry = builtin()
            .ok()
            .and_then(|c| c.entry_for(self).ok().flatten());
        let fixed = match self.samples_per_request {
            Some(SamplesPerRequest::Fixed(k)) => Some(k),
            _ => None,
        };
        let max_samples = self
            .max_samples_per_request
            .or(entry.map(|e| e.max_samples))
            // A fixed count the catalog cannot vouch for is the spec's word.
            .or(fixed)
            .unwrap_or(1)
            .max(1);
        Profile {
            catalog: entry.map(CatalogEntry::name),
            input_per_mtok: self
                .input_price_per_mtok
                .or(entry.and_then(|e| e.input_per_mtok)),
            output_per_mtok: self
                .output_price_per_mtok
                .or(entry.and_then(|e| e.output_per_mtok)),
            batch_input_per_mtok: self
                .batch_input_price_per_mtok
                .or(entry.and_then(|e| e.batch_input_per_mtok)),
            batch_output_per_mtok: self
                .batch_output_price_per_mtok
                .or(entry.and_then(|e| e.batch_output_per_mtok)),
            prices_checked: entry.and_then(|e| e.prices_checked.clone()),
            max_samples,
            max_top_logprobs: entry.map(|e| e.max_top_logprobs),
            temperature: entry.map(|e| e.temperature),
            batch_supported: self.batch.filter(|b| *b).or(entry.map(|e| e.batch)),
            samples_per_request: self.samples_per_request.unwrap_or(SamplesPerRequest::Auto),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> ModelSpec {
        serde_json::from_value(v).unwrap()
    }

    fn k(name: &str) -> crate::provider::ProviderKind {
        name.parse().unwrap()
    }

    #[test]
    fn the_builtin_catalog_is_valid_and_versioned() {
        let c = builtin().unwrap();
        assert!(c.version >= 1);
        assert!(c.models.len() >= 10);
        let g = c.find(k("openai"), "gpt-4o").unwrap();
        assert_eq!(
            (g.input_per_mtok, g.output_per_mtok),
            (Some(2.5), Some(10.0))
        );
        assert_eq!(g.max_samples, 128);
        // Every batch price is at most the interactive one.
        for m in &c.models {
            if let (Some(b), Some(i)) = (m.batch_input_per_mtok, m.input_per_mtok) {
                assert!(b <= i, "{}", m.name());
            }
        }
    }

    #[test]
    fn fine_tuned_ids_find_their_base_entry() {
        let c = builtin().unwrap();
        let e = c
            .find(k("openai"), "ft:gpt-4o-2024-08-06:org::abc123")
            .unwrap();
        assert_eq!(e.id, "ft:gpt-4o-2024-08-06");
        assert!(e.input_per_mtok.is_none() && e.price_note.is_some());
        assert!(c.find(k("openai"), "ft:gpt-3.5-turbo:org::x").is_none());
        assert!(c.find(k("anthropic"), "gpt-4o").is_none());
    }

    #[test]
    fn a_spec_inherits_and_overrides() {
        let p = spec(
            serde_json::json!({"key": "k", "provider": "openai", "model": "gpt-4o",
            "output_price_per_mtok": 12.0}),
        )
        .profile();
        assert_eq!(p.catalog.as_deref(), Some("openai/gpt-4o"));
        assert_eq!(p.input_per_mtok, Some(2.5));
        assert_eq!(p.output_per_mtok, Some(12.0));
        assert_eq!(p.batch_input_per_mtok, Some(1.25));
        assert_eq!(p.samples_for(10), 10);
        assert_eq!(p.samples_for(200), 128);
        // The simulator standing in for a known model.
        let p = spec(
            serde_json::json!({"key": "k", "provider": "sim", "model": "gpt-4o-misaligned",
            "catalog": "openai/gpt-4o", "samples_per_request": 4}),
        )
        .profile();
        assert_eq!(
            (p.max_samples, p.samples_for(10), p.samples_for(3)),
            (128, 4, 3)
        );
        // Unknown: unpriced and single-sample, unless the spec says more.
        let p = spec(
            serde_json::json!({"key": "k", "provider": "openai-compatible",
            "model": "my-model"}),
        )
        .profile();
        assert_eq!(
            (p.catalog.as_deref(), p.input_per_mtok, p.samples_for(10)),
            (None, None, 1)
        );
        let p = spec(
            serde_json::json!({"key": "k", "provider": "openai-compatible",
            "model": "my-model", "samples_per_request": 5}),
        )
        .profile();
        assert_eq!(p.samples_for(10), 5);
        let p = spec(
            serde_json::json!({"key": "k", "provider": "openai-compatible",
            "model": "my-model", "max_samples_per_request": 16}),
        )
        .profile();
        assert_eq!(p.samples_for(10), 10);
        // Anthropic has no multi-sample.
        let p = spec(serde_json::json!({"key": "k", "provider": "anthropic",
            "model": "claude-haiku-4-5"}))
        .profile();
        assert_eq!(p.samples_for(10), 1);
    }

    #[test]
    fn samples_per_request_parses_auto_or_a_count() {
        let ok = |s: &str| toml::from_str::<toml::Table>(s).unwrap()["x"].clone();
        let parse = |s: &str| SamplesPerRequest::deserialize(ok(s));
        assert_eq!(parse("x = \"auto\"").unwrap(), SamplesPerRequest::Auto);
        assert_eq!(parse("x = 3").unwrap(), SamplesPerRequest::Fixed(3));
        for bad in ["x = 0", "x = -2", "x = \"many\"", "x = 2.5"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(
                e.contains("expected \"auto\" or a whole number"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn a_broken_catalog_is_refused_with_the_entry_named() {
        let e = parse(
            "version = 1\nchecked = \"x\"\n[[model]]\nprovider = \"openai\"\nid = \"m\"\ninput_per_mtok = 1.0\nmax_top_logprobs = 0\nmax_samples = 1\ntemperature = true\nbatch = false\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("openai/m"), "{e}");
    }
}
