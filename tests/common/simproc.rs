//! Shared by the simulator's end-to-end tests: a `moralsweep sim` child
//! process on a free port, a minimal HTTP/1.1 client over std sockets, and
//! the check that Python with the test packages is there.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

pub use super::bin;

/// A `moralsweep sim` process, killed when dropped.
pub struct SimProc {
    child: Child,
    /// Kept open so that the simulator can go on writing to its stdout.
    _stdout: BufReader<std::process::ChildStdout>,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl SimProc {
    pub fn start(args: &[&str]) -> SimProc {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> SimProc {
        let mut cmd = Command::new(bin());
        cmd.arg("sim")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start moralsweep sim");
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let Some(url) = line.trim().strip_prefix("moralsweep sim listening on ") else {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).ok();
            panic!("sim did not start: {line:?} {err}");
        };
        SimProc {
            url: url.to_string(),
            child,
            _stdout: stdout,
        }
    }

    /// The simulator's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the simulator to exit; its status if it did.
    pub fn wait_exit(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let t0 = std::time::Instant::now();
        while t0.elapsed() < limit {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    pub fn stats(&self) -> serde_json::Value {
        let r = request(self.addr(), "GET", "/_sim/stats", &[], "");
        assert_eq!(r.status, 200, "{}", r.body);
        serde_json::from_str(&r.body).expect("stats JSON")
    }
}

impl Drop for SimProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
pub struct Reply {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`); a body is sent
/// as JSON.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let content_type = (!body.is_empty()).then_some("application/json");
    request_bytes(addr, method, path, headers, content_type, body.as_bytes())
}

/// One request with a body of any type (a multipart upload, say).
pub fn request_bytes(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    content_type: Option<&str>,
    body: &[u8],
) -> Reply {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
        panic!("{method} {path}: not an HTTP answer: {text:?}");
    };
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// The body of a chunked HTTP/1.1 answer.
pub(crate) fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Whether `python3` can import `modules`. Outside CI a missing module
/// skips the test (with a message); under `CI=true` it fails it.
pub fn python_with(modules: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        let msg = format!(
            "python3 with {modules} is not available (pip install -r tests/requirements.txt)"
        );
        if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
            panic!("{msg}; CI=true, so this is a failure, not a skip");
        }
        eprintln!("SKIPPED: {msg}");
    }
    ok
}

/// `tests/python/<name>` of this repository.
pub fn python_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// A simulator replaying the rating files under `replay` in deal mode: each
/// recorded answer is handed out once, so a sweep can reproduce them exactly.
pub fn deal_replay(replay: &std::path::Path, personas: &std::path::Path) -> SimProc {
    deal_replay_with(replay, personas, &[])
}

/// [`deal_replay`] with `extra` arguments (faults, batch delays).
pub fn deal_replay_with(
    replay: &std::path::Path,
    personas: &std::path::Path,
    extra: &[&str],
) -> SimProc {
    let mut args = vec![
        "--replay",
        replay.to_str().unwrap(),
        "--personas",
        personas.to_str().unwrap(),
        "--replay-mode",
        "deal",
    ];
    args.extend_from_slice(extra);
    SimProc::start(&args)
}

/// Writes `dir/s.toml`: a persona-mode sweep `name` at temperature 0.1 of
/// one simulator model `key` served by `sim`, `top` added to the sweep's
/// keys and `model_extra` to the model's.
#[allow(clippy::too_many_arguments)]
pub fn write_replay_spec(
    dir: &std::path::Path,
    name: &str,
    personas_file: &std::path::Path,
    persona_count: usize,
    reps: u32,
    top: &str,
    key: &str,
    sim: &SimProc,
    model_extra: &str,
) {
    let spec = format!(
        "name = \"{name}\"\npersonas = \"{personas}\"\npersona_count = {persona_count}\nrepetitions = {reps}\n\
         temperature = 0.1\nmodes = [\"persona\"]\noutput = \"out\"\nseed = 7\n{top}\n\n\
         [[model]]\nkey = \"{key}\"\nprovider = \"sim\"\nmodel = \"{key}\"\nbase_url = \"{url}/v1\"\n{model_extra}\n",
        personas = personas_file.display(),
        url = sim.url,
    );
    std::fs::write(dir.join("s.toml"), spec).unwrap();
}

/// `moralsweep run s.toml` in `dir` with 4 workers of 64 requests each,
/// quiet; panics with its stderr unless it succeeds.
pub fn run_sweep(dir: &std::path::Path) -> std::process::Output {
    let out = Command::new(bin())
        .args([
            "run",
            "s.toml",
            "--workers",
            "4",
            "--concurrency",
            "64",
            "--quiet",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "moralsweep run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Documents to check against a schema of OpenAI's OpenAPI description
/// (`tests/python/validate_openai.py`): each is written to a file in `dir`
/// and listed with the schema it must satisfy.
pub struct SchemaManifest {
    pub entries: Vec<serde_json::Value>,
    pub dir: std::path::PathBuf,
}

impl SchemaManifest {
    pub fn new(dir: &std::path::Path) -> Self {
        SchemaManifest {
            entries: Vec::new(),
            dir: dir.to_path_buf(),
        }
    }

    /// Adds `doc`, to be checked against `schema`; `known_keys`: every key
    /// of the document must be one the schema names.
    pub fn add(&mut self, schema: &str, name: &str, doc: &serde_json::Value, known_keys: bool) {
        let path = self.dir.join(format!("{}-{name}.json", self.entries.len()));
        std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        self.entries
            .push(serde_json::json!({"schema": schema, "file": path, "known_keys": known_keys}));
    }

    /// Validates every document against `spec_file`; panics with the
    /// validator's report unless all pass.
    pub fn assert_valid(&self, spec_file: &std::path::Path) {
        let manifest = self.dir.join("manifest.json");
        std::fs::write(&manifest, serde_json::to_vec(&self.entries).unwrap()).unwrap();
        let out = Command::new("python3")
            .arg(python_script("validate_openai.py"))
            .arg(spec_file)
            .arg(&manifest)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schema validation failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!(
                "checked {} documents, 0 problems",
                self.entries.len()
            )),
            "{stdout}"
        );
    }
}
