//! Headless Chromium (Debian's `chromium` package) for the tests that look
//! at pages as a reader would: the DOM after the page's scripts ran, the
//! console, every network request (Chromium's own net log) and a screenshot.
//!
//! `scripts/test` installs Chromium; without it these tests skip with a
//! message, except under `CI=true`, where they fail.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The browser, if installed (else a skip message; a panic under CI=true).
pub fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("which").arg(name).output() {
            let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !p.is_empty() {
                return Some(PathBuf::from(p));
            }
        }
    }
    let msg = "chromium is not installed (./scripts/test installs Debian's chromium package)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}; CI=true, so this is a failure, not a skip");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// What one page load showed.
pub struct Load {
    /// The DOM after the scripts ran (`--dump-dom`).
    pub dom: String,
    /// Console lines Chromium logged (errors, warnings, CSP violations).
    pub console: Vec<String>,
    /// Every URL Chromium requested, from its net log.
    pub requests: Vec<String>,
}

fn base_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--metrics-recording-only",
        "--hide-scrollbars",
        // Nothing leaves the machine: Chromium's own background requests
        // (updates, sign-in) resolve nowhere; pages reach loopback only.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// Loads `url`, lets its scripts run for `budget_ms` of virtual time, and
/// returns the DOM, the console and the requests.
pub fn load(browser: &Path, url: &str, budget_ms: u32) -> Load {
    let tmp = tempfile::tempdir().unwrap();
    let netlog = tmp.path().join("netlog.json");
    let mut args = base_args(&tmp.path().join("profile"));
    args.extend([
        "--enable-logging=stderr".to_string(),
        "--v=0".to_string(),
        format!("--log-net-log={}", netlog.display()),
        "--net-log-capture-mode=Default".to_string(),
        format!("--virtual-time-budget={budget_ms}"),
        "--dump-dom".to_string(),
        url.to_string(),
    ]);
    let out = Command::new(browser)
        .args(&args)
        .output()
        .expect("chromium runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed on {url}:\n{stderr}");
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Content Security Policy"))
        .map(str::to_string)
        .collect();
    Load {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        console,
        requests: netlog_urls(&netlog),
    }
}

/// The URLs of the requests a page made (not Chromium's own background
/// requests, whose initiator is "not an origin"), from a Chromium net log.
fn netlog_urls(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // The log is closed properly on a clean exit; tolerate a missing tail.
    let v: serde_json::Value = serde_json::from_str(&text)
        .or_else(|_| serde_json::from_str(&format!("{}]}}", text.trim_end().trim_end_matches(','))))
        .unwrap_or_else(|e| panic!("the net log {} is not JSON: {e}", path.display()));
    let start = v["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        .as_u64()
        .expect("the net log names its event types");
    let mut urls = Vec::new();
    for e in v["events"].as_array().into_iter().flatten() {
        if e["type"].as_u64() != Some(start) {
            continue;
        }
        let by_page = e["params"]["initiator"].as_str() != Some("not an origin");
        if let (true, Some(u)) = (by_page, e["params"]["url"].as_str()) {
            if !urls.iter().any(|x| x == u) {
                urls.push(u.to_string());
            }
        }
    }
    urls
}

/// Saves a screenshot of `url` (full width, `height` pixels) to `png`.
pub fn screenshot(browser: &Path, url: &str, png: &Path, height: u32, budget_ms: u32) {
    let tmp = tempfile::tempdir().unwrap();
    if let Some(d) = png.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut args = base_args(&tmp.path().join("profile"));
    args.extend([
        format!("--window-size=1400,{height}"),
        format!("--virtual-time-budget={budget_ms}"),
        format!("--screenshot={}", png.display()),
        url.to_string(),
    ]);
    let out = Command::new(browser)
        .args(&args)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success() && png.is_file(),
        "chromium could not take a screenshot of {url}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Where tests keep what a person may want to look at afterwards.
pub fn artifacts() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The elements of `dom` whose start tag contains `marker` (e.g.
/// `class="ms-point"`), each as its attribute map.
pub fn elements(
    dom: &str,
    tag: &str,
    marker: &str,
) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut out = Vec::new();
    let open = format!("<{tag} ");
    let mut rest = dom;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let end = after.find('>').unwrap_or(after.len());
        let head = &after[..end];
        if head.contains(marker) {
            out.push(attributes(head));
        }
        rest = &after[end..];
    }
    out
}

/// `name="value"` pairs of a start tag, entities decoded.
pub fn attributes(head: &str) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    let mut s = head;
    while let Some(eq) = s.find("=\"") {
        let name = s[..eq].trim().rsplit(' ').next().unwrap_or("").to_string();
        let v = &s[eq + 2..];
        let close = v.find('"').unwrap_or(v.len());
        m.insert(name, decode(&v[..close]));
        s = &v[(close + 1).min(v.len())..];
    }
    m
}

fn decode(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The text of `dom` between the first `start` and the following `end`.
pub fn between<'a>(dom: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = dom.find(start)? + start.len();
    let j = dom[i..].find(end)?;
    Some(&dom[i..i + j])
}
