//! The prompt builder reproduces the papers' prompts byte for byte
//! (`reference/prompt_vectors.json`), and the instrument matches
//! `reference/mfq30_items.json`.

use moralsweep_common::instrument::{item_by_id, ITEMS};
use moralsweep_common::personas::load_personas;
use moralsweep_common::prompt::{persona_prompt, self_prompt};
use moralsweep_testsupport::reference::reference_dir;

#[test]
fn prompts_match_reference_byte_for_byte() {
    let Some(dir) = reference_dir() else { return };
    let vectors: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("prompt_vectors.json")).unwrap())
            .unwrap();
    let personas = load_personas(&dir.join("personas.json")).unwrap();
    let persona_prompts = vectors["persona_prompts"].as_array().unwrap();
    assert_eq!(persona_prompts.len(), 90);
    for v in persona_prompts {
        let p = v["persona_id"].as_u64().unwrap() as usize;
        let q = v["question_id"].as_u64().unwrap() as u8;
        let built = persona_prompt(&personas[p], item_by_id(q).unwrap());
        assert_eq!(built, v["prompt"].as_str().unwrap(), "persona {p} item {q}");
    }
    let self_prompts = vectors["self_prompts"].as_array().unwrap();
    assert_eq!(self_prompts.len(), 30);
    for v in self_prompts {
        let q = v["question_id"].as_u64().unwrap() as u8;
        assert_eq!(
            self_prompt(item_by_id(q).unwrap()),
            v["prompt"].as_str().unwrap(),
            "self item {q}"
        );
    }
}

#[test]
fn items_match_reference() {
    let Some(dir) = reference_dir() else { return };
    let items: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("mfq30_items.json")).unwrap())
            .unwrap();
    assert_eq!(items.len(), 30);
    for (ours, theirs) in ITEMS.iter().zip(&items) {
        assert_eq!(ours.id as u64, theirs["id"].as_u64().unwrap());
        assert_eq!(ours.text, theirs["text"].as_str().unwrap());
        assert_eq!(
            ours.foundation.name(),
            theirs["foundation"].as_str().unwrap()
        );
        assert_eq!(ours.kind.name(), theirs["kind"].as_str().unwrap());
    }
}
