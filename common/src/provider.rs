//! The providers a model can be asked through: one typed name per provider,
//! parsed once from the spec (or a catalog file) and matched by the
//! compiler everywhere else. A provider's string (`"openai"`) appears only
//! here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A provider a `[[model]]` entry names in `provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProviderKind {
    /// OpenAI's API (`api.openai.com`).
    OpenAi,
    /// Anthropic's Messages API.
    Anthropic,
    /// Google's Gemini API (AI Studio).
    Gemini,
    /// Any server speaking OpenAI's chat completions (OpenRouter, vLLM, ...).
    OpenAiCompatible,
    /// The simulator (speaks OpenAI's API).
    Sim,
    /// Answers drawn in-process, for tests and dry runs.
    Synthetic,
    /// The local model engine (a GGUF file).
    Local,
    /// Amazon Bedrock (the Converse API, SigV4, the AWS credential chain).
    Bedrock,
    /// Google Vertex AI (Gemini and Claude, Application Default Credentials).
    Vertex,
    /// Azure OpenAI (the v1 or deployments routes, `api-key` or Entra ID).
    AzureOpenAi,
}

impl ProviderKind {
    /// Every provider, in the order errors and help list them.
    pub const ALL: [ProviderKind; 10] = [
        ProviderKind::OpenAi,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
        ProviderKind::OpenAiCompatible,
        ProviderKind::Sim,
        ProviderKind::Synthetic,
        ProviderKind::Local,
        ProviderKind::Bedrock,
        ProviderKind::Vertex,
        ProviderKind::AzureOpenAi,
    ];

    /// The name a spec writes (`provider = "openai"`).
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::OpenAiCompatible => "openai-compatible",
            ProviderKind::Sim => "sim",
            ProviderKind::Synthetic => "synthetic",
            ProviderKind::Local => "local",
            ProviderKind::Bedrock => "bedrock",
            ProviderKind::Vertex => "vertex",
            ProviderKind::AzureOpenAi => "azure-openai",
        }
    }

    /// The provider a spec's name denotes.
    pub fn from_name(name: &str) -> Option<ProviderKind> {
        ProviderKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Every provider's name, comma-separated (for error messages).
    pub fn names() -> String {
        ProviderKind::ALL.map(ProviderKind::name).join(", ")
    }

    /// Whether `batch = true` can send this provider's requests through a
    /// batch API here (`sim` speaks OpenAI's).
    pub fn has_batch_api(self) -> bool {
        matches!(
            self,
            ProviderKind::OpenAi
                | ProviderKind::Anthropic
                | ProviderKind::Gemini
                | ProviderKind::Sim
                | ProviderKind::AzureOpenAi
        )
    }

    /// The providers [`ProviderKind::has_batch_api`] holds for.
    pub fn with_batch_api() -> Vec<ProviderKind> {
        ProviderKind::ALL
            .into_iter()
            .filter(|k| k.has_batch_api())
            .collect()
    }

    /// Whether the provider's models are OpenAI's own or served under
    /// OpenAI's names, so OpenAI's tokenizers count their prompts.
    pub fn uses_openai_tokenizers(self) -> bool {
        matches!(
            self,
            ProviderKind::OpenAi
                | ProviderKind::OpenAiCompatible
                | ProviderKind::Sim
                | ProviderKind::AzureOpenAi
        )
    }

    /// Whether the provider's calls run in-process (no network, no price).
    pub fn in_process(self) -> bool {
        matches!(self, ProviderKind::Local | ProviderKind::Synthetic)
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Why a provider name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProvider(pub String);

impl fmt::Display for UnknownProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "is {}; expected one of {}",
            crate::instrument::clip(&self.0),
            ProviderKind::names()
        )
    }
}

impl std::error::Error for UnknownProvider {}

impl FromStr for ProviderKind {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderKind::from_name(s).ok_or_else(|| UnknownProvider(s.to_string()))
    }
}

impl Serialize for ProviderKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ProviderKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// A model's keys that say where it lives, as [`check_placement`] reads
/// them (the spec's `[[model]]` fills it; this module does not know the
/// spec, which names `ProviderKind`).
pub(crate) struct Placement<'a> {
    pub(crate) provider: ProviderKind,
    pub(crate) base_url: &'a Option<String>,
    pub(crate) region: &'a Option<String>,
    pub(crate) project: &'a Option<String>,
    pub(crate) location: &'a Option<String>,
    pub(crate) api_version: &'a Option<String>,
}

/// Checks the keys that say where a cloud model lives (`region`,
/// `project`, `location`, `api_version`): present where the provider needs
/// them, absent elsewhere, and safe to put in a URL. The error names the key.
pub(crate) fn check_placement(m: &Placement<'_>) -> Result<(), (&'static str, String)> {
    let mine = |key: &'static str, owner: ProviderKind, value: &Option<String>| {
        if value.is_some() && m.provider != owner {
            return Err((
                key,
                format!(
                    "is set, but it is only for provider = \"{owner}\" and this model's provider is \"{}\"; remove it",
                    m.provider
                ),
            ));
        }
        Ok(())
    };
    mine("region", ProviderKind::Bedrock, m.region)?;
    mine("project", ProviderKind::Vertex, m.project)?;
    mine("location", ProviderKind::Vertex, m.location)?;
    mine("api_version", ProviderKind::AzureOpenAi, m.api_version)?;
    let need = |key: &'static str, value: &Option<String>, example: &str, ok: fn(char) -> bool| {
        match value {
            None => Err((
                key,
                format!("is missing; provider = \"{}\" needs it, e.g. {key} = \"{example}\"", m.provider),
            )),
            Some(v) if v.is_empty() || v.len() > 64 || !v.chars().all(ok) => Err((
                key,
                format!(
                    "is {}; expected a name like \"{example}\" (letters, digits and '-', at most 64 characters)",
                    crate::instrument::clip(v)
                ),
            )),
            Some(_) => Ok(()),
        }
    };
    fn lower(c: char) -> bool {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    }
    // Domain-scoped projects read `example.com:project`.
    fn project(c: char) -> bool {
        lower(c) || c == '.' || c == ':'
    }
    match m.provider {
        ProviderKind::Bedrock => need("region", m.region, "us-east-1", lower)?,
        ProviderKind::Vertex => {
            need("project", m.project, "my-project", project)?;
            need("location", m.location, "us-central1", lower)?;
        }
        ProviderKind::AzureOpenAi => {
            if m.base_url.is_none() {
                return Err((
                    "base_url",
                    "is missing; provider = \"azure-openai\" needs the resource's address, e.g. \"https://my-resource.openai.azure.com/openai/v1/\" (or \"https://my-resource.openai.azure.com\" with api_version for the deployments route)".into(),
                ));
            }
            if let Some(v) = m.api_version {
                let b = v.as_bytes();
                let date = b.len() >= 10
                    && b[..10].iter().enumerate().all(|(i, c)| {
                        if i == 4 || i == 7 {
                            *c == b'-'
                        } else {
                            c.is_ascii_digit()
                        }
                    });
                let rest = &b[b.len().min(10)..];
                if !date || !(rest.is_empty() || rest == b"-preview") {
                    return Err((
                        "api_version",
                        format!(
                            "is {}; expected an Azure OpenAI api-version such as \"2024-10-21\" or \"2025-04-01-preview\"",
                            crate::instrument::clip(v)
                        ),
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_provider() {
        for k in ProviderKind::ALL {
            assert_eq!(k.name().parse::<ProviderKind>(), Ok(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
            assert_eq!(serde_json::from_str::<ProviderKind>(&json).unwrap(), k);
        }
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let e = "openia".parse::<ProviderKind>().unwrap_err().to_string();
        assert!(
            e.contains("\"openia\"") && e.contains("openai, anthropic"),
            "{e}"
        );
        let e = serde_json::from_str::<ProviderKind>("\"Bedrock\"").unwrap_err();
        assert!(e.to_string().contains("bedrock"), "{e}");
    }
}
