//! How a prompt is framed for the model: as it is, as Gemma chat turns, or
//! as a completion with a cue.

/// How prompts are framed for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    /// The prompt text as it is, after BOS.
    Raw,
    /// Gemma's chat turns: `<start_of_turn>user\n{prompt}<end_of_turn>\n<start_of_turn>model\n`,
    /// for instruction-tuned models.
    GemmaChat,
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
            Template::GemmaChat
        } else {
            Template::Completion {
                cue: Self::DEFAULT_CUE.to_string(),
            }
        }
    }
}
