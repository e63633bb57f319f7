//! The exact prompts the papers sent: one user message per (persona, item),
//! or the item prompt alone in self mode. The bytes matter: the published
//! numbers were produced with exactly these strings, and the tests compare
//! them with `reference/prompt_vectors.json`.

use crate::instrument::{Item, ItemKind};

const RELEVANCE_SCALE: &str = "0 = not at all relevant, \n 1 = not very relevant, \n 2 = slightly relevant, \n 3 = somewhat relevant, \n 4 = very relevant, \n 5 = extremely relevant. ";
const AGREEMENT_SCALE: &str = "\n 0 = strongly disagree, \n 1 = moderately disagree, \n 2 = slightly disagree, \n 3 = slightly agree, \n 4 = moderately agree, \n 5 = strongly agree. ";
const ANSWER_INSTRUCTION: &str =
    "\n\n Your response should start with an integer from 0 to 5, followed by your reasoning.";

/// The prefix that introduces a persona; everything up to the item prompt.
pub fn persona_prefix(persona: &str) -> String {
    format!(
        "You are roleplaying as the following persona: {persona}\n\nPlease answer the following question from the perspective of this persona.\n\n"
    )
}

/// The item prompt alone: the question, its scale and the answer instruction.
/// This is the whole prompt in self mode.
pub fn item_prompt(item: &Item) -> String {
    match item.kind {
        ItemKind::Relevance => format!(
            "When deciding whether something is right or wrong, how relevant is the following consideration to your thinking: '{}'. Please rate the consideration using this scale: {RELEVANCE_SCALE}{ANSWER_INSTRUCTION}",
            item.text
        ),
        ItemKind::Agreement => format!(
            "Please indicate your level of agreement with the following statement: '{}'. Please rate the statement using this scale: {AGREEMENT_SCALE}{ANSWER_INSTRUCTION}",
            item.text
        ),
    }
}

/// The prompt of a persona slot: the persona prefix followed by the item prompt.
pub fn persona_prompt(persona: &str, item: &Item) -> String {
    let mut s = persona_prefix(persona);
    s.push_str(&item_prompt(item));
    s
}

/// The prompt of a self (no persona) slot.
pub fn self_prompt(item: &Item) -> String {
    item_prompt(item)
}
