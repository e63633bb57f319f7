//! Token counts of the prompts a sweep sends, from one place: the pacing of
//! tokens per minute (coordinator and worker), the dry run's totals and the
//! simulator's `usage` all count here, so they agree.
//!
//! | model | how its tokens are counted |
//! | --- | --- |
//! | OpenAI families (`openai`, `openai-compatible`, `sim`) that tiktoken knows: `gpt-4o*`, `gpt-4.1*`, `gpt-5*`, `o1*`/`o3*`/`o4*` (o200k_base), `gpt-4*`, `gpt-3.5*` (cl100k_base) | exactly, with OpenAI's BPE (the `tiktoken-rs` crate embeds it; nothing is downloaded), plus the chat format's fixed overhead ([`CHAT_OVERHEAD`]) |
//! | every other model | the documented estimate [`estimate_tokens`]: one token per four characters |
//!
//! Fine-tuned ids (`ft:gpt-4o-2024-08-06:org::id`) and router ids
//! (`openai/gpt-4o`) count with their base model's tokenizer. Anthropic and
//! Gemini publish no tokenizer; their adapters ask the providers' counting
//! endpoints instead where the spec allows the calls (`count_tokens = true`),
//! and accounting always uses the tokens a provider reported.
//!
//! This module depends on nothing else of the crate, so it can move as it is.

use std::fmt;

/// Tokens the chat format adds to one user message: three for the message
/// frame, one for the role `user`, three that prime the reply (OpenAI's
/// published counting rule for its chat models).
pub const CHAT_OVERHEAD: u64 = 7;

/// Characters per token of the estimate used where no tokenizer is known.
pub const CHARS_PER_TOKEN: u64 = 4;

/// The estimate used where no tokenizer is known: one token per
/// [`CHARS_PER_TOKEN`] characters, at least one.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64)
        .div_ceil(CHARS_PER_TOKEN)
        .max(1)
}

/// Which counting a model gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokenizer {
    /// OpenAI's o200k_base (GPT-4o, GPT-4.1, GPT-5, o-series).
    O200kBase,
    /// OpenAI's cl100k_base (GPT-4, GPT-3.5).
    Cl100kBase,
    /// [`estimate_tokens`].
    Estimate,
}

impl Tokenizer {
    /// The tokenizer of a model of a provider (see the module's table).
    pub fn for_model(provider: crate::provider::ProviderKind, model: &str) -> Tokenizer {
        if !provider.uses_openai_tokenizers() {
            return Tokenizer::Estimate;
        }
        let base = model.strip_prefix("ft:").unwrap_or(model);
        let base = base.split(':').next().unwrap_or(base);
        let base = base.rsplit('/').next().unwrap_or(base);
        match tiktoken_rs::tokenizer::get_tokenizer(base) {
            Some(tiktoken_rs::tokenizer::Tokenizer::O200kBase) => Tokenizer::O200kBase,
            Some(tiktoken_rs::tokenizer::Tokenizer::Cl100kBase) => Tokenizer::Cl100kBase,
            _ => Tokenizer::Estimate,
        }
    }

    /// Its name, for dry runs and notes: `o200k_base`, `cl100k_base` or
    /// `estimate`.
    pub fn name(self) -> &'static str {
        match self {
            Tokenizer::O200kBase => "o200k_base",
            Tokenizer::Cl100kBase => "cl100k_base",
            Tokenizer::Estimate => "estimate",
        }
    }

    /// Whether the count is exact (a real tokenizer) rather than estimated.
    pub fn exact(self) -> bool {
        self != Tokenizer::Estimate
    }

    /// Tokens of a bare text.
    pub fn text_tokens(self, text: &str) -> u64 {
        match self {
            Tokenizer::O200kBase => tiktoken_rs::o200k_base_singleton()
                .encode_ordinary(text)
                .len() as u64,
            Tokenizer::Cl100kBase => tiktoken_rs::cl100k_base_singleton()
                .encode_ordinary(text)
                .len() as u64,
            Tokenizer::Estimate => estimate_tokens(text),
        }
    }

    /// Input tokens of a request whose prompt is one user message: the
    /// text, plus the chat format's overhead where the count is exact.
    pub fn prompt_tokens(self, prompt: &str) -> u64 {
        match self {
            Tokenizer::Estimate => estimate_tokens(prompt),
            exact => exact.text_tokens(prompt) + CHAT_OVERHEAD,
        }
    }

    /// Tokens a request counts against a tokens-per-minute limit: its
    /// prompt and its whole output allowance (providers reserve it).
    pub fn request_tokens(self, prompt: &str, max_tokens: u32) -> u64 {
        self.prompt_tokens(prompt) + max_tokens as u64
    }
}

impl fmt::Display for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_get_their_tokenizer() {
        use Tokenizer::*;
        for (provider, model, want) in [
            ("openai", "gpt-4o", O200kBase),
            ("openai", "gpt-4o-2024-08-06", O200kBase),
            ("openai", "ft:gpt-4o-2024-08-06:org::abc", O200kBase),
            ("openai", "gpt-4.1-mini", O200kBase),
            ("openai", "o3-mini", O200kBase),
            ("openai", "gpt-5-mini", O200kBase),
            ("openai", "gpt-4-turbo", Cl100kBase),
            ("openai", "gpt-3.5-turbo", Cl100kBase),
            ("openai-compatible", "openai/gpt-4o", O200kBase),
            ("sim", "gpt-4o-misaligned", O200kBase),
            ("sim", "sim-a", Estimate),
            ("anthropic", "claude-sonnet-4-5", Estimate),
            ("gemini", "gemini-2.5-flash", Estimate),
            ("openai-compatible", "meta-llama/llama-3.1-8b", Estimate),
        ] {
            assert_eq!(
                Tokenizer::for_model(provider.parse().unwrap(), model),
                want,
                "{model}"
            );
        }
    }

    #[test]
    fn counts() {
        assert_eq!(estimate_tokens(""), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        // "Hello world" is two tokens in both BPEs.
        assert_eq!(Tokenizer::O200kBase.text_tokens("Hello world"), 2);
        assert_eq!(Tokenizer::Cl100kBase.text_tokens("Hello world"), 2);
        assert_eq!(
            Tokenizer::O200kBase.prompt_tokens("Hello world"),
            2 + CHAT_OVERHEAD
        );
        assert_eq!(Tokenizer::Estimate.request_tokens("abcdefgh", 1), 3);
        // A real MFQ prompt: the estimate is in the right range, the BPE exact.
        let p = crate::prompt::persona_prompt("a retired nurse", &crate::ITEMS[0]);
        let exact = Tokenizer::O200kBase.text_tokens(&p);
        let est = estimate_tokens(&p);
        assert!(exact > 50 && (exact as f64 - est as f64).abs() / (exact as f64) < 0.5);
    }
}
