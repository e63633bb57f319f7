//! The prompt builder reproduces the papers' prompts byte for byte
//! (`reference/prompt_vectors.json`), and the instrument matches
//! `reference/mfq30_items.json`.

use moralsweep_common::instrument::{item_by_id, Instrument, ITEMS};
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

/// Every prompt of a vectors file built from an instrument definition.
fn check_vectors(instrument: &Instrument, vectors: &std::path::Path, personas: &[String]) {
    let vectors: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(vectors).unwrap()).unwrap();
    let persona_prompts = vectors["persona_prompts"].as_array().unwrap();
    assert_eq!(persona_prompts.len(), 3 * instrument.item_count());
    for v in persona_prompts {
        let p = v["persona_id"].as_u64().unwrap() as usize;
        let q = v["question_id"].as_u64().unwrap() as u8;
        let built = instrument.persona_prompt(&personas[p], instrument.item(q).unwrap());
        assert_eq!(
            built,
            v["prompt"].as_str().unwrap(),
            "{} persona {p} item {q}",
            instrument.name
        );
    }
    let self_prompts = vectors["self_prompts"].as_array().unwrap();
    assert_eq!(self_prompts.len(), instrument.item_count());
    for v in self_prompts {
        let q = v["question_id"].as_u64().unwrap() as u8;
        assert_eq!(
            instrument.self_prompt(instrument.item(q).unwrap()),
            v["prompt"].as_str().unwrap(),
            "{} self item {q}",
            instrument.name
        );
    }
}

#[test]
fn instrument_definitions_reproduce_both_vector_files() {
    let Some(dir) = reference_dir() else { return };
    let personas = load_personas(&dir.join("personas.json")).unwrap();
    let mfq = Instrument::resolve("mfq-30").unwrap();
    check_vectors(&mfq, &dir.join("prompt_vectors.json"), &personas);
    let bfi = Instrument::resolve("bfi-44").unwrap();
    check_vectors(&bfi, &dir.join("bfi/prompt_vectors.json"), &personas);
}

#[test]
fn bfi_items_match_reference() {
    let Some(dir) = reference_dir() else { return };
    let items: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("bfi/bfi44_items.json")).unwrap())
            .unwrap();
    let bfi = Instrument::resolve("bfi-44").unwrap();
    assert_eq!(items.len(), 44);
    assert_eq!(bfi.item_count(), 44);
    assert_eq!(bfi.scale.range(), "1-5");
    for (ours, theirs) in bfi.items.iter().zip(&items) {
        assert_eq!(ours.id as u64, theirs["id"].as_u64().unwrap());
        assert_eq!(ours.text, theirs["text"].as_str().unwrap());
        assert_eq!(ours.group, theirs["domain"].as_str().unwrap());
        assert_eq!(ours.reverse, theirs["reverse_scored"].as_bool().unwrap());
    }
}

#[test]
fn a_user_instrument_file_works_by_path() {
    let Some(dir) = reference_dir() else { return };
    let personas = load_personas(&dir.join("personas.json")).unwrap();
    // The BFI definition saved under another name is a user's own file.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("my-bfi.json");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("instruments/bfi-44.json"),
    )
    .unwrap()
    .replace("\"name\": \"bfi-44\"", "\"name\": \"my-bfi\"");
    std::fs::write(&path, text).unwrap();
    let mine = Instrument::resolve(path.to_str().unwrap()).unwrap();
    assert_eq!(mine.name, "my-bfi");
    check_vectors(&mine, &dir.join("bfi/prompt_vectors.json"), &personas);
}
