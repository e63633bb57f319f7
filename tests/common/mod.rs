//! Helpers shared by the end-to-end tests: sweep specs over the reference
//! personas, running the binary, and comparing rating files.

#![allow(dead_code)]

pub mod cluster;
pub mod dictionary;
pub mod exact;
pub mod obs;
pub mod simproc;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_moralsweep")
}

/// Writes `n` personas (from the reference set when present, else made up)
/// to `dir/personas.json`.
pub fn write_personas(dir: &Path, n: usize) -> PathBuf {
    let reference = std::env::var_os("MORALSWEEP_REFERENCE")
        .map(PathBuf::from)
        .or_else(|| {
            let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference");
            p.is_dir().then_some(p)
        });
    let personas: Vec<String> = reference
        .and_then(|r| std::fs::read_to_string(r.join("personas.json")).ok())
        .and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok())
        .map(|mut v| {
            v.truncate(n);
            v
        })
        .filter(|v| v.len() == n)
        .unwrap_or_else(|| {
            (0..n)
                .map(|i| format!("Persona number {i}, a person with views."))
                .collect()
        });
    let path = dir.join("personas.json");
    std::fs::write(&path, serde_json::to_string(&personas).unwrap()).unwrap();
    path
}

/// The top of the test sweeps' specs: persona and self modes, small
/// bootstraps, a fixed seed, output in `out`.
fn spec_header(name: &str, personas: usize, reps: u32) -> String {
    format!(
        "name = \"{name}\"\npersonas = \"personas.json\"\npersona_count = {personas}\nrepetitions = {reps}\nmodes = [\"persona\", \"self\"]\noutput = \"out\"\nseed = 11\nbootstrap = 50\nrerun_bootstrap = 20\n"
    )
}

/// A sweep of synthetic models; `extra` is appended to every model table.
pub fn spec_text(name: &str, models: &[&str], personas: usize, reps: u32, extra: &str) -> String {
    let mut s = spec_header(name, personas, reps);
    for (i, m) in models.iter().enumerate() {
        s.push_str(&format!(
            "\n[[model]]\nkey = \"{m}\"\nprovider = \"synthetic\"\nmodel = \"{m}-weights\"\nfamily = \"F\"\nvariant = \"{}\"\n{extra}\n",
            if i == 0 { "base" } else { "insecure" }
        ));
    }
    s
}

pub fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env_remove("MORALSWEEP_TOKEN")
        .output()
        .expect("the moralsweep binary runs")
}

/// Every CSV under `dir/data`, with the `collected_at` column removed.
pub fn data_without_time(out: &Path) -> BTreeMap<String, Vec<Vec<String>>> {
    let mut m = BTreeMap::new();
    let data = out.join("data");
    for e in std::fs::read_dir(&data).unwrap_or_else(|e| panic!("{}: {e}", data.display())) {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "csv") {
            continue;
        }
        let mut r = csv::Reader::from_path(&p).unwrap();
        let headers = r.headers().unwrap().clone();
        let skip = headers.iter().position(|h| h == "collected_at");
        let mut rows = vec![headers
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(_, h)| h.to_string())
            .collect::<Vec<_>>()];
        for rec in r.records() {
            let rec = rec.unwrap();
            rows.push(
                rec.iter()
                    .enumerate()
                    .filter(|(i, _)| Some(*i) != skip)
                    .map(|(_, v)| v.to_string())
                    .collect(),
            );
        }
        m.insert(p.file_name().unwrap().to_string_lossy().to_string(), rows);
    }
    m
}

/// Checks that a persona file holds every slot exactly once, in slot order.
pub fn assert_every_slot_once(rows: &[Vec<String>], personas: usize, reps: usize) {
    assert_eq!(
        rows[0][..3],
        ["persona_id", "question_id", "run_index"].map(String::from)
    );
    assert_eq!(rows.len() - 1, personas * 30 * reps, "one row per slot");
    let mut i = 0;
    for p in 0..personas {
        for q in 1..=30 {
            for r in 1..=reps {
                i += 1;
                assert_eq!(
                    rows[i][..3],
                    [p.to_string(), q.to_string(), r.to_string()],
                    "row {i} out of slot order"
                );
            }
        }
    }
}

/// A sweep whose models call the provider simulator at `sim_url` through
/// the OpenAI adapter, with the key in the environment variable `key_env`.
pub fn spec_text_sim(
    name: &str,
    models: &[&str],
    personas: usize,
    reps: u32,
    sim_url: &str,
    key_env: &str,
    extra: &str,
) -> String {
    let mut s = spec_header(name, personas, reps);
    for (i, m) in models.iter().enumerate() {
        s.push_str(&format!(
            "\n[[model]]\nkey = \"{m}\"\nprovider = \"openai\"\nmodel = \"{m}\"\nbase_url = \"{sim_url}/v1\"\napi_key_env = \"{key_env}\"\nfamily = \"F\"\nvariant = \"{}\"\n{extra}\n",
            if i == 0 { "base" } else { "insecure" }
        ));
    }
    s
}

/// Every file under `dir` (recursively) that contains `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    hits.push(p);
                }
            }
        }
    }
    hits
}

/// A child process, killed and reaped when dropped.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (at most 30 s) until something accepts connections on
/// 127.0.0.1:`port`.
pub fn wait_for_port(port: u16) {
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "nothing listens on port {port} after 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `moralsweep coordinator` listening on 127.0.0.1:`port` over the Redis at
/// `redis_url`, its files in `data_dir`, `token` in its environment and
/// `extra` arguments after those, started in `cwd`; returned once it
/// accepts connections.
pub fn spawn_coordinator(
    port: u16,
    redis_url: &str,
    data_dir: &Path,
    token: &str,
    extra: &[&str],
    cwd: &Path,
) -> Proc {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "coordinator",
        "--listen",
        &listen,
        "--redis",
        redis_url,
        "--data-dir",
        data_dir.to_str().expect("a UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    let proc = Proc(
        Command::new(bin())
            .args(&args)
            .current_dir(cwd)
            .env("MORALSWEEP_TOKEN", token)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("the moralsweep binary starts"),
    );
    wait_for_port(port);
    proc
}

/// `moralsweep worker --coordinator url --name name` with `extra`
/// arguments, `token` in its environment.
pub fn spawn_worker(url: &str, name: &str, token: &str, extra: &[&str]) -> Proc {
    let mut args = vec!["worker", "--coordinator", url, "--name", name];
    args.extend_from_slice(extra);
    Proc(
        Command::new(bin())
            .args(&args)
            .env("MORALSWEEP_TOKEN", token)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("the moralsweep binary starts"),
    )
}

/// `moralsweep submit s.toml` (from `dir`) to the coordinator at `url`;
/// panics with its error output if the submission fails.
pub fn submit(dir: &Path, url: &str, token: &str) {
    let out = Command::new(bin())
        .args(["submit", "s.toml", "--coordinator", url])
        .current_dir(dir)
        .env("MORALSWEEP_TOKEN", token)
        .output()
        .expect("the moralsweep binary runs");
    assert!(
        out.status.success(),
        "submit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CPU seconds (user + system) a process has used so far, from
/// /proc/PID/stat; `None` once it is gone.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
}
