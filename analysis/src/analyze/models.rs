//! The models file (`analyze --models`): family and variant of each model key.

use super::*;
use moralsweep_common::spec::ModelSpec;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Family and variant of one model key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    pub family: Option<String>,
    /// `base` marks the reference of its family's deltas.
    pub variant: Option<String>,
    /// A checkpoint's training step: the family's models with a step form
    /// a trajectory (`trajectories.csv`).
    #[serde(default)]
    pub step: Option<u64>,
}

/// Model key -> family and variant, for the deltas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelsMap {
    pub models: BTreeMap<String, ModelInfo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsFile {
    #[serde(default)]
    models: BTreeMap<String, ModelInfo>,
}

impl ModelsMap {
    /// Reads a `--models` TOML file: `[models."<key>"]` tables with
    /// `family` and `variant`.
    pub fn load(path: &Path) -> Result<ModelsMap, AnalyzeError> {
        let text = moralsweep_userfs::read_to_string_bounded(path, moralsweep_userfs::SPEC_LIMIT)
            .map_err(|error| AnalyzeError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        ModelsMap::parse(&text, path)
    }

    /// Parses `--models` TOML text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ModelsMap, AnalyzeError> {
        let file: ModelsFile = toml::from_str(text).map_err(|e| {
            let mut message = e.message().to_string();
            if let Some(span) = e.span() {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                message = format!("line {line}: {message}");
            }
            AnalyzeError::Models {
                path: path.to_path_buf(),
                message: format!(
                    "{message} (expected [models.\"<key>\"] tables with `family`, `variant` and optionally `step`, a checkpoint's training step)"
                ),
            }
        })?;
        Ok(ModelsMap {
            models: file.models,
        })
    }

    /// The families and variants a sweep spec gives its models.
    pub fn from_specs(specs: &[ModelSpec]) -> ModelsMap {
        ModelsMap {
            models: specs
                .iter()
                .map(|m| {
                    (
                        m.key.clone(),
                        ModelInfo {
                            family: m.family.clone(),
                            variant: m.variant.clone(),
                            step: m.step,
                        },
                    )
                })
                .collect(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&ModelInfo> {
        self.models.get(key)
    }

    pub(super) fn family(&self, key: &str) -> String {
        self.get(key)
            .and_then(|m| m.family.clone())
            .unwrap_or_default()
    }

    pub(super) fn step(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(|m| m.step)
    }

    pub(super) fn variant(&self, key: &str) -> String {
        self.get(key)
            .and_then(|m| m.variant.clone())
            .unwrap_or_default()
    }
}
