//! How a prompt is framed for the model: as it is, as the model's chat
//! turns, or as a completion with a cue; and which chat turns a model file
//! uses ([`ChatFormat`], recognised from its `tokenizer.chat_template`).

use crate::arch::Arch;

/// How prompts are framed for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    /// The prompt text as it is, after BOS.
    Raw,
    /// One user turn in the model's chat format ([`ChatFormat`]) and the
    /// start of the assistant's turn, for instruction-tuned models.
    Chat,
    /// For a base (pretrained) model, which continues text rather than
    /// answering turns: the prompt followed by a cue that starts the answer,
    /// as a document would (`{prompt}{cue}`, after BOS).
    Completion { cue: String },
}

impl Template {
    /// The cue of [`Template::Completion`] when none is given: the rating
    /// protocol asks for a rating first, and a base model continues this line
    /// with a digit about two times in three (Gemma 3 270M; after the chat
    /// turns it echoes the prompt instead and almost never starts with one).
    pub const DEFAULT_CUE: &'static str = "\n\nRating: ";

    /// The framing a model file implies: chat turns when the file carries a
    /// chat template (`tokenizer.chat_template`, which instruction-tuned
    /// models ship), else a completion with the default cue.
    pub fn for_model(has_chat_template: bool) -> Template {
        if has_chat_template {
            Template::Chat
        } else {
            Template::Completion {
                cue: Self::DEFAULT_CUE.to_string(),
            }
        }
    }
}

/// The chat turns of a model family. A user turn holding the prompt, then
/// the opening of the assistant's turn (after BOS where the vocabulary adds
/// one):
///
/// - `Gemma` (Gemma 2 and 3): `<start_of_turn>user\n{prompt}<end_of_turn>\n<start_of_turn>model\n`
/// - `Llama3`: `<|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`
///   (the prompt trimmed, as the template does; Llama 3.1+ templates open
///   with a system turn giving the knowledge cut-off and the template's
///   default date, 26 Jul 2024)
/// - `ChatMl` (Qwen): `<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n`
///   (after Qwen 2.5's default system turn when the template has one)
/// - `Mistral`: `[INST] {prompt} [/INST]` (`[INST]`/`[/INST]` as control
///   tokens where the vocabulary has them: `[INST] {prompt}[/INST]`)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatFormat {
    Gemma,
    Llama3 { system: Option<String> },
    ChatMl { system: Option<String> },
    Mistral,
}

/// One piece of a framed prompt: a special token by its text, or text
/// tokenised as it is (never parsed for special tokens: a prompt that
/// contains `<|im_start|>` stays text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Special(&'static str),
    Text(String),
}

const LLAMA31_SYSTEM: &str = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n";
const QWEN25_SYSTEM: &str = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

impl ChatFormat {
    /// The names of the recognised formats, for errors.
    pub const KNOWN: &'static str =
        "Gemma (<start_of_turn>), Llama 3 (<|start_header_id|>), ChatML/Qwen (<|im_start|>), Mistral ([INST])";

    /// The format of a model file: from its chat template when it has one,
    /// else the architecture's own (Gemma's turns for Gemma models; other
    /// base models have none). The error says why there is no format.
    pub(crate) fn detect(chat_template: Option<&str>, arch: Arch) -> Result<ChatFormat, String> {
        let Some(t) = chat_template else {
            return match arch {
                Arch::Gemma2 | Arch::Gemma3 => Ok(ChatFormat::Gemma),
                other => Err(format!(
                    "the model file has no tokenizer.chat_template and architecture {:?} has no default chat format (a base model: use template \"completion\" or \"raw\")",
                    other.name()
                )),
            };
        };
        if t.contains("<start_of_turn>") {
            Ok(ChatFormat::Gemma)
        } else if t.contains("<|start_header_id|>") {
            Ok(ChatFormat::Llama3 {
                system: t
                    .contains("Cutting Knowledge Date")
                    .then(|| LLAMA31_SYSTEM.to_string()),
            })
        } else if t.contains("<|im_start|>") {
            Ok(ChatFormat::ChatMl {
                system: t.contains(QWEN25_SYSTEM).then(|| QWEN25_SYSTEM.to_string()),
            })
        } else if t.contains("[INST]") {
            Ok(ChatFormat::Mistral)
        } else {
            let mut shown: String = t.chars().take(80).collect();
            if shown.len() < t.len() {
                shown.push_str("...");
            }
            Err(format!(
                "tokenizer.chat_template is not one this build knows ({shown:?}); known: {}; or use template \"completion\" or \"raw\"",
                Self::KNOWN
            ))
        }
    }

    /// The pieces of one user turn holding `prompt` and the opening of the
    /// assistant's turn (BOS not included). `has` tells whether the
    /// vocabulary has a special token.
    pub(crate) fn parts(&self, prompt: &str, has: impl Fn(&str) -> bool) -> Vec<Part> {
        use Part::{Special, Text};
        match self {
            ChatFormat::Gemma => vec![
                Special("<start_of_turn>"),
                Text(format!("user\n{prompt}")),
                Special("<end_of_turn>"),
                Text("\n".into()),
                Special("<start_of_turn>"),
                Text("model\n".into()),
            ],
            ChatFormat::Llama3 { system } => {
                let mut v = vec![];
                let mut turn = |role: &str, text: &str| {
                    v.push(Special("<|start_header_id|>"));
                    v.push(Text(role.to_string()));
                    v.push(Special("<|end_header_id|>"));
                    v.push(Text(format!("\n\n{text}")));
                    v.push(Special("<|eot_id|>"));
                };
                if let Some(s) = system {
                    turn("system", s);
                }
                turn("user", prompt.trim());
                v.push(Special("<|start_header_id|>"));
                v.push(Text("assistant".into()));
                v.push(Special("<|end_header_id|>"));
                v.push(Text("\n\n".into()));
                v
            }
            ChatFormat::ChatMl { system } => {
                let mut v = vec![];
                let mut turn = |role: &str, text: &str| {
                    v.push(Special("<|im_start|>"));
                    v.push(Text(format!("{role}\n{text}")));
                    v.push(Special("<|im_end|>"));
                    v.push(Text("\n".into()));
                };
                if let Some(s) = system {
                    turn("system", s);
                }
                turn("user", prompt);
                v.push(Special("<|im_start|>"));
                v.push(Text("assistant\n".into()));
                v
            }
            ChatFormat::Mistral if has("[INST]") && has("[/INST]") => vec![
                Special("[INST]"),
                Text(format!(" {prompt}")),
                Special("[/INST]"),
            ],
            ChatFormat::Mistral => vec![Text(format!("[INST] {prompt} [/INST]"))],
        }
    }

    /// The text of the framed turn (special tokens written out), as a chat
    /// template renders it.
    pub fn render(&self, prompt: &str, has: impl Fn(&str) -> bool) -> String {
        self.parts(prompt, has)
            .into_iter()
            .map(|p| match p {
                Part::Special(s) => s.to_string(),
                Part::Text(t) => t,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised_from_the_template_or_the_architecture() {
        assert_eq!(
            ChatFormat::detect(None, Arch::Gemma2),
            Ok(ChatFormat::Gemma)
        );
        let e = ChatFormat::detect(None, Arch::Qwen2).unwrap_err();
        assert!(e.contains("qwen2") && e.contains("completion"), "{e}");
        let llama31 = "{{- bos_token }}Cutting Knowledge Date: ...<|start_header_id|>";
        assert_eq!(
            ChatFormat::detect(Some(llama31), Arch::Llama),
            Ok(ChatFormat::Llama3 {
                system: Some(LLAMA31_SYSTEM.into())
            })
        );
        let qwen = "{% for m in messages %}<|im_start|>{{ m.role }}";
        assert_eq!(
            ChatFormat::detect(Some(qwen), Arch::Qwen3),
            Ok(ChatFormat::ChatMl { system: None })
        );
        let e = ChatFormat::detect(Some("{{ messages }} ### Human:"), Arch::Llama).unwrap_err();
        assert!(e.contains("### Human") && e.contains("ChatML"), "{e}");
        let m = ChatFormat::Mistral;
        assert_eq!(m.render("hi", |_| false), "[INST] hi [/INST]");
        assert_eq!(m.render("hi", |_| true), "[INST] hi[/INST]");
        let l = ChatFormat::Llama3 { system: None };
        assert_eq!(
            l.render(" hi\n", |_| true),
            "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
    }
}
