//! Every spec under examples/ parses and validates (API keys not required),
//! and the quickstart is the offline one: local provider, 20 personas, the
//! three modes.

use std::path::Path;

use moralsweep_common::spec::KeyCheck;
use moralsweep_common::{Mode, Sweep};

#[test]
fn example_specs_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // The simulator example reads the papers' personas beside the repository.
        if text.contains("shared/reference") && !dir.join("../../shared/reference").is_dir() {
            eprintln!(
                "SKIPPED {}: ../shared/reference is not beside the repository",
                path.display()
            );
            continue;
        }
        Sweep::load(&path, KeyCheck::Skip).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        seen += 1;
    }
    assert!(
        seen >= 5,
        "expected the quickstart and one spec per real provider, found {seen}"
    );
}

#[test]
fn quickstart_is_offline_with_twenty_personas_and_three_modes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.toml");
    let s = Sweep::load(&path, KeyCheck::Check).unwrap();
    assert_eq!(s.personas.len(), 20);
    assert_eq!(
        s.spec.modes,
        vec![Mode::Persona, Mode::SelfMode, Mode::Logprob]
    );
    assert_eq!(s.spec.models.len(), 1);
    assert_eq!(s.spec.models[0].provider.name(), "local");
}
