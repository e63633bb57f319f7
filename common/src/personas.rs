//! Persona files: a JSON array of persona descriptions; a persona's id is its
//! index in the array.

use std::path::{Path, PathBuf};

/// Why a persona file could not be used. Each message holds its whole cause
/// (no `source()`), so a printed chain shows it once.
#[derive(Debug, thiserror::Error)]
pub enum PersonaError {
    #[error(
        "cannot read persona file {path}: {error} (give a path to a JSON array of persona strings)"
    )]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("persona file {path} is not valid JSON at line {line}, column {column}: {message} (expected a JSON array of strings)")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("persona file {path} must hold a JSON array of strings, but its top level is {found}")]
    NotArray { path: PathBuf, found: &'static str },
    #[error("persona file {path}: entry {index} is {found}, not a string (every persona must be a JSON string)")]
    NotString {
        path: PathBuf,
        index: usize,
        found: &'static str,
    },
    #[error(
        "persona file {path}: entry {index} is an empty string (every persona needs a description)"
    )]
    EmptyEntry { path: PathBuf, index: usize },
    #[error("persona file {path} holds an empty array (it needs at least one persona)")]
    Empty { path: PathBuf },
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Parses persona JSON text; `path` names the source in errors.
pub fn parse_personas(text: &str, path: &Path) -> Result<Vec<String>, PersonaError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| PersonaError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let serde_json::Value::Array(entries) = value else {
        return Err(PersonaError::NotArray {
            path: path.to_path_buf(),
            found: json_kind(&value),
        });
    };
    if entries.is_empty() {
        return Err(PersonaError::Empty {
            path: path.to_path_buf(),
        });
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(index, v)| match v {
            serde_json::Value::String(s) if s.trim().is_empty() => Err(PersonaError::EmptyEntry {
                path: path.to_path_buf(),
                index,
            }),
            serde_json::Value::String(s) => Ok(s),
            other => Err(PersonaError::NotString {
                path: path.to_path_buf(),
                index,
                found: json_kind(&other),
            }),
        })
        .collect()
}

/// Reads a persona file.
pub fn load_personas(path: &Path) -> Result<Vec<String>, PersonaError> {
    let text = moralsweep_userfs::read_to_string_bounded(path, moralsweep_userfs::PERSONAS_LIMIT)
        .map_err(|error| PersonaError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    parse_personas(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Vec<String>, PersonaError> {
        parse_personas(s, Path::new("p.json"))
    }

    #[test]
    fn accepts_array_of_strings() {
        assert_eq!(parse(r#"["a", "b"]"#).unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn rejects_bad_input_with_clear_errors() {
        let e = parse("[\"a\",").unwrap_err().to_string();
        assert!(e.contains("p.json") && e.contains("not valid JSON"), "{e}");
        let e = parse("{}").unwrap_err().to_string();
        assert!(e.contains("an object"), "{e}");
        let e = parse("[]").unwrap_err().to_string();
        assert!(e.contains("empty array"), "{e}");
        let e = parse(r#"["a", 3]"#).unwrap_err().to_string();
        assert!(e.contains("entry 1") && e.contains("a number"), "{e}");
        let e = load_personas(Path::new("/nonexistent/p.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/p.json"), "{e}");
    }
}
