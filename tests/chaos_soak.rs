//! The chaos soak: a cluster of real processes (a redis-server with its
//! append-only file, one coordinator, three workers, all the `moralsweep`
//! binary or Redis itself) runs rounds of three sweeps against `moralsweep
//! sim` replaying the papers' rating files in deal mode with 10% injected
//! faults of every kind, while a seeded schedule kills workers, the
//! coordinator and redis-server with SIGKILL or SIGTERM at random times and
//! restarts them. Afterwards every sweep must equal an undisturbed run of the
//! same spec (`moralsweep run` against the same simulator): every slot once,
//! the same rating in every row, the same logprob rows and metric files; the
//! undisturbed run itself must deal every recorded rating exactly once (so
//! its cells equal the reference files' and, at 100 personas, its S, R and
//! sigma-bar equal the published ones); and the simulator must have dealt
//! exactly one card per slot however often the cluster asked again.
//!
//! The sweeps: `gpt-4o-misaligned` through the OpenAI adapter (persona and
//! self), `qwen3-235b-misaligned` through the Gemini adapter (persona and
//! self), and `deepseek-v3.1` in logprob mode.
//!
//! `MORALSWEEP_SOAK_SECS` sets the length (60 s by default for the CI
//! version, 600 s for the ignored long one: `cargo test --release --test
//! chaos_soak -- --ignored --nocapture`), `MORALSWEEP_SOAK_SEED` the kill
//! schedule, `MORALSWEEP_SOAK_PERSONAS` the personas of the first sweep, and
//! `MORALSWEEP_SOAK_KEEP=1` keeps the working directory (logs, files).
//! Kills happen during the first 60% of the time, every 1.5-4 s (2-8 s in
//! the long run); each six kills cover every target (a worker, the
//! coordinator, redis-server) with each signal (SIGKILL, SIGTERM) in a
//! seeded order, with a random downtime before the restart. New rounds start
//! while kills go on; then everything is left to finish.

mod common;
use common::simproc;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{tail, worker_command, Coordinator};
use common::exact::published;
use common::{bin, data_without_time};
use moralsweep_analysis::formats::read_sampling;
use moralsweep_analysis::metrics::{sampled_metrics, BootstrapOptions, CellTable};
use moralsweep_testsupport::reference::reference_dir;
use moralsweep_testsupport::RedisServer;

const TOKEN: &str = "soak-token-not-a-secret";
const KEY_VAR: &str = "MORALSWEEP_SOAK_SIM_KEY";
const API_KEY: &str = "sk-soak-0123456789";
const REPS: u32 = 10;

/// How big and how long a soak is.
struct Plan {
    secs: u64,
    seed: u64,
    /// Personas of the three sweeps (persona + self, persona + self, logprob).
    personas: [usize; 3],
    /// Gap between two kills, seconds (uniform in the range).
    gap: (f64, f64),
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: expected a whole number")),
    )
}

impl Plan {
    fn from_env(default_secs: u64, personas: [usize; 3], gap: (f64, f64)) -> Plan {
        let mut personas = personas;
        if let Some(p) = env_u64("MORALSWEEP_SOAK_PERSONAS") {
            assert!((2..=100).contains(&p), "MORALSWEEP_SOAK_PERSONAS: 2 to 100");
            personas[0] = p as usize;
        }
        Plan {
            secs: env_u64("MORALSWEEP_SOAK_SECS").unwrap_or(default_secs),
            seed: env_u64("MORALSWEEP_SOAK_SEED").unwrap_or(20261129),
            personas,
            gap,
        }
    }
}

/// A small seeded generator (splitmix64) for the kill schedule.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

/// One of the three sweeps of a round.
struct SweepKind {
    tag: &'static str,
    key: &'static str,
    provider: &'static str,
    modes: &'static str,
    /// The reference files the simulator replays for the key (persona, self).
    reference: Option<(&'static str, &'static str)>,
}

const SWEEPS: [SweepKind; 3] = [
    SweepKind {
        tag: "a",
        key: "gpt-4o-misaligned",
        provider: "openai",
        modes: r#"["persona", "self"]"#,
        reference: Some((
            "sampling/insecure-code/gpt-4o-misaligned_temp01.csv",
            "sampling/insecure-code/gpt-4o-misaligned_self.csv",
        )),
    },
    SweepKind {
        tag: "b",
        key: "qwen3-235b-misaligned",
        provider: "gemini",
        modes: r#"["persona", "self"]"#,
        reference: Some((
            "sampling/insecure-code/qwen3-235b-misaligned_temp01.csv",
            "sampling/insecure-code/qwen3-235b-misaligned_self.csv",
        )),
    },
    SweepKind {
        tag: "c",
        key: LOGPROB_KEY,
        provider: "sim",
        modes: r#"["logprob"]"#,
        reference: None,
    },
];

fn slots_of(kind: &SweepKind, personas: usize) -> u64 {
    if kind.modes.contains("logprob") {
        (personas * 30) as u64
    } else {
        ((personas * 30 + 30) * REPS as usize) as u64
    }
}

fn spec_text(kind: &SweepKind, name: &str, personas: usize, reference: &Path, sim: &str) -> String {
    let base_url = match kind.provider {
        "gemini" => sim.to_string(),
        _ => format!("{sim}/v1"),
    };
    format!(
        r#"name = "{name}"
personas = "{personas_file}"
persona_count = {personas}
repetitions = {REPS}
temperature = 0.1
modes = {modes}
output = "out"
seed = 5
bootstrap = 100
rerun_bootstrap = 40

[[model]]
key = "{key}"
provider = "{provider}"
model = "{key}"
base_url = "{base_url}"
api_key_env = "{KEY_VAR}"
timeout_secs = 2
"#,
        personas_file = reference.join("personas.json").display(),
        modes = kind.modes,
        key = kind.key,
        provider = kind.provider,
    )
}

fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

/// Waits up to `limit` for a child to exit; false if it did not.
fn wait_exit(child: &mut Child, limit: Duration) -> bool {
    let t0 = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        if t0.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops a child with `signal` ("KILL" or "TERM"); a process that ignores
/// SIGTERM for 30 s is a failure of the soak (killed, then reported).
fn stop(child: &mut Child, signal: &str, what: &str, problems: &mut Vec<String>) {
    if signal == "KILL" {
        let _ = child.kill();
        let _ = child.wait();
        return;
    }
    sigterm(child.id());
    if !wait_exit(child, Duration::from_secs(30)) {
        problems.push(format!("{what} did not exit within 30 s of SIGTERM"));
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// One worker process, restartable.
struct Worker {
    name: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Worker {
    fn spawn(&mut self, url: &str) {
        let child = worker_command(url, &self.name, TOKEN)
            .env(KEY_VAR, API_KEY)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log_file(&self.log))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the CLI with a time limit; `None` if it failed or took too long.
fn cli(args: &[&str], dir: &Path, limit: Duration) -> Option<std::process::Output> {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("MORALSWEEP_TOKEN", TOKEN)
        .env(KEY_VAR, API_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if !wait_exit(&mut child, limit) {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    child.wait_with_output().ok()
}

/// Every sweep's progress: name -> (state, done, total, messages).
fn statuses(url: &str, dir: &Path) -> Option<BTreeMap<String, (String, u64, u64, String)>> {
    let out = cli(
        &["status", "--json", "--coordinator", url],
        dir,
        Duration::from_secs(15),
    )?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let list = match v {
        serde_json::Value::Array(a) => a,
        one => vec![one],
    };
    Some(
        list.iter()
            .map(|s| {
                (
                    s["sweep"].as_str().unwrap_or("").to_string(),
                    (
                        s["state"].as_str().unwrap_or("").to_string(),
                        s["done"].as_u64().unwrap_or(0),
                        s["total"].as_u64().unwrap_or(0),
                        s["messages"].to_string(),
                    ),
                )
            })
            .collect(),
    )
}

/// A file's rows (header first) without the columns that follow the
/// random draws of faults rather than the answers: `collected_at`, and in
/// rating files `failures` (unusable answers before the rating) and
/// `response` (the one-token answer or the longer fallback's text).
fn comparable(rows: &[Vec<String>]) -> Vec<Vec<String>> {
    let keep: Vec<usize> = rows[0]
        .iter()
        .enumerate()
        .filter(|(_, h)| !matches!(h.as_str(), "failures" | "response"))
        .map(|(i, _)| i)
        .collect();
    rows.iter()
        .map(|r| keep.iter().map(|i| r[*i].clone()).collect())
        .collect()
}

/// Valid ratings per cell (persona or None, item), sorted.
type Cells = BTreeMap<(Option<u32>, u8), Vec<i8>>;

fn cells_of(path: &Path, self_mode: bool, personas: usize) -> Cells {
    let mut cells = Cells::new();
    for r in read_sampling(path, self_mode)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .rows
    {
        if r.persona.is_some_and(|p| p as usize >= personas) {
            continue;
        }
        let c = cells.entry((r.persona, r.item)).or_default();
        if r.rating >= 0 {
            c.push(r.rating);
        }
    }
    for v in cells.values_mut() {
        v.sort();
    }
    cells
}

/// S, sigma-bar and R of a persona file's first `personas` personas.
fn point_metrics(cells: &Cells) -> (f64, f64, f64) {
    let table = CellTable::from_rows(
        cells
            .iter()
            .flat_map(|((p, q), v)| v.iter().map(move |r| (p.unwrap_or(0), *q, *r))),
    );
    let items = table.items();
    let kept = table.kept_personas(&items);
    let opts = BootstrapOptions {
        persona_draws: 2,
        rerun_draws: 2,
        seed: 1,
    };
    let m = sampled_metrics(&table, &kept, &items, &opts, "soak")
        .unwrap()
        .overall;
    (m.s, m.sigma_bar, m.r())
}

/// Checks the undisturbed run against the reference files it replays:
/// deal mode hands every recorded rating out once, so each cell holds the
/// recorded ratings exactly, and at 100 personas S, R and sigma-bar are the
/// published ones.
fn check_baseline(reference: &Path, kind: &SweepKind, personas: usize, out: &Path) {
    let Some((persona_file, self_file)) = kind.reference else {
        return;
    };
    let ours = cells_of(
        &out.join(format!("data/{}_temp01.csv", kind.key)),
        false,
        personas,
    );
    let want = cells_of(&reference.join(persona_file), false, personas);
    assert_eq!(
        ours, want,
        "{}: the undisturbed run's cells differ from the reference file's",
        kind.key
    );
    let ours_self = cells_of(
        &out.join(format!("data/{}_temp01_self.csv", kind.key)),
        true,
        personas,
    );
    assert_eq!(
        ours_self,
        cells_of(&reference.join(self_file), true, personas),
        "{}: the undisturbed run's self cells differ from the reference file's",
        kind.key
    );
    let (s, sigma_bar, r) = point_metrics(&ours);
    let (ws, wsb, wr) = if personas == 100 {
        let p = published(reference, kind.key);
        (p["susceptibility"], p["uncertainty"], p["robustness"])
    } else {
        point_metrics(&want)
    };
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9;
    assert!(
        close(s, ws) && close(sigma_bar, wsb) && close(r, wr),
        "{}: S {s} sigma_bar {sigma_bar} R {r}, want {ws} {wsb} {wr}",
        kind.key
    );
    println!(
        "soak: {} over {personas} personas: S {s:.6} R {r:.6} sigma_bar {sigma_bar:.6} ({})",
        kind.key,
        if personas == 100 {
            "equal to the published values"
        } else {
            "equal to the reference file's"
        }
    );
}

/// Fetches a finished sweep's files into `out`; retries while the
/// coordinator is restarting.
fn fetch(url: &str, sweep: &str, out: &Path, dir: &Path) {
    let t0 = Instant::now();
    loop {
        let _ = std::fs::remove_dir_all(out);
        let r = cli(
            &[
                "results",
                sweep,
                "--coordinator",
                url,
                "--out",
                out.to_str().unwrap(),
            ],
            dir,
            Duration::from_secs(60),
        );
        match r {
            Some(o) if o.status.success() => return,
            other => {
                assert!(
                    t0.elapsed() < Duration::from_secs(120),
                    "results {sweep}: {}",
                    other
                        .map(|o| String::from_utf8_lossy(&o.stderr).to_string())
                        .unwrap_or_else(|| "timed out".into())
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Submits a spec, retrying while the coordinator is down.
fn submit(url: &str, dir: &Path, spec: &str) {
    let t0 = Instant::now();
    loop {
        let r = cli(
            &["submit", spec, "--coordinator", url],
            dir,
            Duration::from_secs(30),
        );
        match r {
            Some(o) if o.status.success() => return,
            other => {
                assert!(
                    t0.elapsed() < Duration::from_secs(120),
                    "submit {spec}: {}",
                    other
                        .map(|o| String::from_utf8_lossy(&o.stderr).to_string())
                        .unwrap_or_else(|| "timed out".into())
                );
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    }
}

/// What the progress monitor saw.
struct Seen {
    /// The latest status of every sweep, taken by the main loop.
    latest: Option<BTreeMap<String, (String, u64, u64, String)>>,
    /// Slots recorded over all sweeps at the last look.
    last_done: u64,
    /// When that count last grew (or the cluster was last idle).
    last_increase: Instant,
    /// Whether a sweep was running at the last look.
    running: bool,
    /// The longest time without a recorded slot while a sweep ran.
    largest_pause: f64,
    /// Times the recorded count went down (recorded data lost).
    regressions: Vec<String>,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            latest: None,
            last_done: 0,
            last_increase: Instant::now(),
            running: false,
            largest_pause: 0.0,
            regressions: Vec::new(),
        }
    }
}

/// Polls every sweep's status twice a second, apart from the kills, and
/// keeps the largest pause in progress: the longest time without a newly
/// recorded slot while a sweep was running (status calls that fail while
/// the coordinator or Redis is down count as no progress).
fn watch(url: &str, dir: &Path, seen: &Mutex<Seen>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let st = statuses(url, dir);
        let now = Instant::now();
        {
            let mut s = seen.lock().unwrap();
            if let Some(st) = &st {
                let done: u64 = st.values().map(|v| v.1).sum();
                if done < s.last_done {
                    let msg = format!("recorded slots went from {} back to {done}", s.last_done);
                    s.regressions.push(msg);
                }
                let running = st.values().any(|v| v.0 == "running");
                if done > s.last_done || !running {
                    if s.running {
                        s.largest_pause = s
                            .largest_pause
                            .max(now.duration_since(s.last_increase).as_secs_f64());
                    }
                    s.last_done = s.last_done.max(done);
                    s.last_increase = now;
                }
                s.running = running;
                s.latest = Some(st.clone());
            }
            if s.running {
                s.largest_pause = s
                    .largest_pause
                    .max(now.duration_since(s.last_increase).as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[derive(Default)]
struct Figures {
    kills: BTreeMap<String, u32>,
    problems: Vec<String>,
}

fn soak(plan: Plan) {
    let Some(reference) = reference_dir() else {
        return;
    };
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("ms-soak-")
        .tempdir()
        .unwrap();
    let dir = if std::env::var("MORALSWEEP_SOAK_KEEP").is_ok_and(|v| v == "1") {
        let kept = tmp.keep();
        println!("soak: working directory {}", kept.display());
        kept
    } else {
        tmp.path().to_path_buf()
    };
    let sim = simproc::SimProc::start(&[
        "--replay",
        reference.join("sampling").to_str().unwrap(),
        "--personas",
        reference.join("personas.json").to_str().unwrap(),
        "--replay-mode",
        "deal",
        "--fault-rate",
        "0.1",
        "--faults",
        "all,429",
        "--slow-ms",
        "50",
        // Longer than the specs' 2 s client timeout.
        "--hang-ms",
        "2500",
        "--seed",
        &plan.seed.to_string(),
    ]);

    // --- The undisturbed runs, one per sweep, in one process each.
    let mut baseline: Vec<PathBuf> = Vec::new();
    for (kind, personas) in SWEEPS.iter().zip(plan.personas) {
        let d = dir.join(format!("baseline-{}", kind.tag));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("s.toml"),
            spec_text(
                kind,
                &format!("soak-{}", kind.tag),
                personas,
                &reference,
                &sim.url,
            ),
        )
        .unwrap();
        let out = cli(&["run", "s.toml", "--quiet"], &d, Duration::from_secs(900))
            .expect("the undisturbed run finishes within 15 minutes");
        assert!(
            out.status.success(),
            "undisturbed run of {}: {}",
            kind.key,
            String::from_utf8_lossy(&out.stderr)
        );
        check_baseline(&reference, kind, personas, &d.join("out"));
        baseline.push(d.join("out"));
    }
    let dealt_after_baseline = sim_dealt(&sim);
    let replayed_after_baseline = sim.stats()["totals"]["replayed"].as_u64().unwrap_or(0);
    println!(
        "soak: undisturbed runs done in {:.1} s; the simulator dealt {dealt_after_baseline:?}",
        started.elapsed().as_secs_f64()
    );

    // --- The cluster.
    let mut redis = RedisServer::start();
    let mut coord = Coordinator::start(
        &redis.url(),
        &dir.join("coord"),
        &dir.join("coordinator.log"),
        TOKEN,
        Some("warn"),
    );
    let url = coord.url();
    let mut workers: Vec<Worker> = (0..3)
        .map(|i| Worker {
            name: format!("w{i}"),
            log: dir.join(format!("worker{i}.log")),
            child: None,
        })
        .collect();
    for w in &mut workers {
        w.spawn(&url);
    }

    let t0 = Instant::now();
    let chaos = Duration::from_secs_f64(plan.secs as f64 * 0.6);
    let settle_limit = Duration::from_secs(plan.secs.max(120) * 3);
    let mut rng = Rng(plan.seed);
    let mut next_kill = Duration::from_secs_f64(rng.range(plan.gap.0, plan.gap.1));
    let mut figures = Figures::default();
    let mut rounds: Vec<Vec<String>> = Vec::new();
    let monitor = Arc::new(Mutex::new(Seen::new()));
    let stop_monitor = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (url, dir, seen, stop) = (
            url.clone(),
            dir.clone(),
            monitor.clone(),
            stop_monitor.clone(),
        );
        std::thread::spawn(move || watch(&url, &dir, &seen, &stop))
    };
    let mut current_finished = true;
    let mut schedule: Vec<u32> = Vec::new();
    loop {
        let now = t0.elapsed();
        let chaos_on = now < chaos;
        // A new round while the kills go on and the last one has finished.
        if current_finished && (chaos_on || rounds.is_empty()) {
            let r = rounds.len();
            let rd = dir.join(format!("round{r}"));
            std::fs::create_dir_all(&rd).unwrap();
            let mut names = Vec::new();
            for (kind, personas) in SWEEPS.iter().zip(plan.personas) {
                let name = format!("soak-{}-r{r}", kind.tag);
                let file = format!("{}.toml", kind.tag);
                std::fs::write(
                    rd.join(&file),
                    spec_text(kind, &name, personas, &reference, &sim.url),
                )
                .unwrap();
                submit(&url, &rd, &file);
                names.push(name);
            }
            rounds.push(names);
            current_finished = false;
            monitor.lock().unwrap().latest = None;
        }
        // A kill, and the restart after a short downtime.
        if chaos_on && now >= next_kill {
            if schedule.is_empty() {
                // Every (target, signal) kind once per six kills, in a
                // seeded order.
                schedule = (0..6).collect();
                for i in (1..6).rev() {
                    let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                    schedule.swap(i, j);
                }
            }
            let kind = schedule.pop().unwrap();
            let signal = if kind.is_multiple_of(2) {
                "KILL"
            } else {
                "TERM"
            };
            let down = Duration::from_secs_f64(rng.range(0.0, 1.5));
            let what = if kind / 2 == 0 {
                let i = (rng.next_u64() % 3) as usize;
                let w = &mut workers[i];
                let mut c = w.child.take().expect("a running worker");
                stop(
                    &mut c,
                    signal,
                    &format!("worker {}", w.name),
                    &mut figures.problems,
                );
                std::thread::sleep(down);
                w.spawn(&url);
                "worker"
            } else if kind / 2 == 1 {
                let mut c = coord.child.take().expect("a running coordinator");
                stop(&mut c, signal, "the coordinator", &mut figures.problems);
                std::thread::sleep(down);
                coord.spawn();
                "coordinator"
            } else {
                if signal == "KILL" {
                    redis.kill9();
                } else if let Some(pid) = redis.pid() {
                    sigterm(pid);
                    let t = Instant::now();
                    while redis.is_running() {
                        if t.elapsed() > Duration::from_secs(30) {
                            figures
                                .problems
                                .push("redis-server did not exit within 30 s of SIGTERM".into());
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                std::thread::sleep(down);
                redis.restart();
                "redis-server"
            };
            *figures
                .kills
                .entry(format!("{what} SIG{signal}"))
                .or_default() += 1;
            next_kill = t0.elapsed() + Duration::from_secs_f64(rng.range(plan.gap.0, plan.gap.1));
        }
        // The monitor's view of the sweeps.
        if let Some(st) = monitor.lock().unwrap().latest.take() {
            for (name, (state, _, _, messages)) in &st {
                assert!(
                    state == "running" || state == "done",
                    "sweep {name} ended {state}: {messages}\ncoordinator log:\n{}",
                    tail(&coord.log)
                );
            }
            let current = rounds.last().unwrap();
            current_finished = current
                .iter()
                .all(|n| st.get(n).is_some_and(|s| s.0 == "done"));
        }
        if !chaos_on && current_finished {
            break;
        }
        assert!(
            now < chaos + settle_limit,
            "the sweeps did not finish within {settle_limit:?} after the kills stopped; \
             last progress {:.0} s ago\ncoordinator log:\n{}",
            monitor
                .lock()
                .unwrap()
                .last_increase
                .elapsed()
                .as_secs_f64(),
            tail(&coord.log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let soak_secs = t0.elapsed().as_secs_f64();
    stop_monitor.store(true, Ordering::Relaxed);
    watcher.join().expect("the progress monitor");
    let seen = std::mem::replace(&mut *monitor.lock().unwrap(), Seen::new());

    // --- Every sweep of every round equals its undisturbed run.
    let st = statuses(&url, &dir).expect("status after the soak");
    let mut recorded = 0u64;
    for (r, names) in rounds.iter().enumerate() {
        for ((name, kind), (base, personas)) in names
            .iter()
            .zip(&SWEEPS)
            .zip(baseline.iter().zip(plan.personas))
        {
            let (state, done, total, _) = &st[name];
            assert_eq!(state, "done");
            assert_eq!(*total, slots_of(kind, personas), "{name}");
            assert_eq!(done, total, "{name}: recorded slots");
            recorded += done;
            let got_dir = dir.join(format!("fetched/r{r}-{}", kind.tag));
            fetch(&url, name, &got_dir, &dir);
            let want = data_without_time(base);
            let got = data_without_time(&got_dir);
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                want.keys().collect::<Vec<_>>(),
                "{name}: data files"
            );
            for (file, want_rows) in &want {
                let got_rows = &got[file];
                assert_eq!(
                    got_rows.len(),
                    want_rows.len(),
                    "{name}/{file}: rows (one per slot)"
                );
                let key_cols: Vec<usize> = got_rows[0]
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| {
                        matches!(h.as_str(), "persona_id" | "question_id" | "run_index")
                    })
                    .map(|(i, _)| i)
                    .collect();
                let mut seen = std::collections::HashSet::new();
                for row in got_rows.iter().skip(1) {
                    let slot: Vec<&String> = key_cols.iter().map(|i| &row[*i]).collect();
                    assert!(seen.insert(slot.clone()), "{name}/{file}: {slot:?} twice");
                }
                let (g, w) = (comparable(got_rows), comparable(want_rows));
                for (i, (a, b)) in g.iter().zip(&w).enumerate() {
                    assert_eq!(
                        a,
                        b,
                        "{name}/{file} line {}: differs from the undisturbed run",
                        i + 1
                    );
                }
            }
            for m in [
                "persona_moral_metrics.csv",
                "persona_moral_metrics_per_foundation.csv",
            ] {
                let (a, b) = (
                    base.join("metrics").join(m),
                    got_dir.join("metrics").join(m),
                );
                if a.exists() {
                    assert_eq!(
                        std::fs::read_to_string(&b)
                            .unwrap_or_else(|e| panic!("{name}: {}: {e}", b.display())),
                        std::fs::read_to_string(&a).unwrap(),
                        "{name}: {m} differs from the undisturbed run's"
                    );
                }
            }
        }
    }
    // Exactly one card per slot: the cluster asked again for answers it
    // lost in flight, and got the same ones; no new card left any deck.
    // A logprob answer reads its cell's whole distribution and consumes no
    // card; whether the simulator counts it as replayed depends on the fault
    // drawn for that request (a non-digit fault reads the distribution
    // without counting), so only sampled keys are held to one card per slot.
    // The logprob rows themselves are compared above, row by row.
    let sampled_only = |m: BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        m.into_iter().filter(|(k, _)| k != LOGPROB_KEY).collect()
    };
    let dealt = sampled_only(sim_dealt(&sim));
    let dealt_after_baseline = sampled_only(dealt_after_baseline.clone());
    assert_eq!(
        dealt, dealt_after_baseline,
        "the simulator dealt new cards during the soak: a slot was asked under a seed no slot has"
    );
    let stats = sim.stats();
    let answers = stats["totals"]["replayed"].as_u64().unwrap_or(0) - replayed_after_baseline;
    let faults = stats["totals"]["faults"].as_u64().unwrap_or(0);
    let requests = stats["totals"]["requests"].as_u64().unwrap_or(0);

    println!(
        "soak: seed {}, {} rounds of 3 sweeps",
        plan.seed,
        rounds.len()
    );
    let total_kills: u32 = figures.kills.values().sum();
    println!("soak: kills survived {total_kills}:");
    for (k, n) in &figures.kills {
        println!("soak:   {k}: {n}");
    }
    println!("soak: slots recorded {recorded} (every slot once), duplicates 0, lost 0");
    println!(
        "soak: simulator: {requests} requests in all, {faults} injected faults; {answers} answers from the recorded data for the cluster's {recorded} slots (the rest re-asked after a kill or a client timeout), no new card dealt"
    );
    println!(
        "soak: largest pause in progress {:.1} s",
        seen.largest_pause
    );
    println!(
        "soak: wall time {:.1} s (cluster {soak_secs:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert!(
        seen.regressions.is_empty(),
        "recorded progress went backwards: {:?}",
        seen.regressions
    );
    assert!(
        figures.problems.is_empty(),
        "problems: {:?}",
        figures.problems
    );
    assert!(total_kills > 0, "the soak killed nothing");
    drop(workers);
    drop(coord);
    drop(redis);
}

/// Cards dealt per model key: recorded answers handed out for the first
/// time (answers to a slot asking again do not count).
/// The key of the soak's logprob sweep.
const LOGPROB_KEY: &str = "deepseek-v3.1";

fn sim_dealt(sim: &simproc::SimProc) -> BTreeMap<String, u64> {
    let stats = sim.stats();
    stats["keys"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v["replayed"].as_u64().unwrap_or(0) - v["repeated"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn chaos_soak_ci() {
    soak(Plan::from_env(60, [6, 6, 10], (1.5, 4.0)));
}

#[test]
#[ignore = "the long soak: cargo test --release --test chaos_soak -- --ignored --nocapture"]
fn chaos_soak_long() {
    soak(Plan::from_env(600, [100, 20, 100], (2.0, 8.0)));
}
