//! A folder of recorded ratings for the provider simulator to replay
//! (`SimConfig::replay` and `SimConfig::personas`): the personas file and,
//! per model key, a sampling file holding one cell, persona 1 ("a pilot")
//! on item 4, with the ratings a test chooses. The simulator's own tests and
//! the worker's tests against it start from this folder.

use std::path::{Path, PathBuf};

/// The personas of the folder; persona 1 is "a pilot".
pub const PERSONAS: &str = r#"["a nurse", "a pilot"]"#;

/// The header of a sampling rating file.
const HEADER: &str = "persona_id,question_id,run_index,rating,failures,response,collected_at\n";

/// A temporary replay folder, removed when dropped.
pub struct ReplayDir {
    dir: tempfile::TempDir,
}

impl ReplayDir {
    /// A folder holding only `personas.json`.
    pub fn new() -> ReplayDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("personas.json"), PERSONAS).unwrap();
        ReplayDir { dir }
    }

    /// Adds `<key>_temp01.csv`: persona 1, item 4, one row per rating in
    /// `ratings` (run indices from 1, each answer the rating itself).
    pub fn cell(self, key: &str, ratings: &[u8]) -> ReplayDir {
        let mut csv = String::from(HEADER);
        for (i, r) in ratings.iter().enumerate() {
            csv.push_str(&format!("1,4,{},{r},0,{r},t\n", i + 1));
        }
        std::fs::write(self.dir.path().join(format!("{key}_temp01.csv")), csv).unwrap();
        self
    }

    /// The folder to replay.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Its personas file.
    pub fn personas(&self) -> PathBuf {
        self.dir.path().join("personas.json")
    }
}

impl Default for ReplayDir {
    fn default() -> Self {
        ReplayDir::new()
    }
}
