//! The cluster commands a person types, against real processes (a
//! redis-server of the test's own, the coordinator, a worker): `results`
//! never loses a file already in its folder nor mixes two sweeps; a
//! coordinator checks its `--data-dir` at start and shows a failed write in
//! `status` until the cause is fixed; `cancel` keeps what was recorded and
//! `results` fetches it as partial; `delete` removes a sweep; `status`
//! against a silent port gives up with a clear error; a short token is
//! accepted with a warning.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use moralsweep_testsupport::{free_port, RedisServer};

const TOKEN: &str = "cluster-cli-test-token-0123456789";

fn cli_with(args: &[&str], dir: &Path, token: &str) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("MORALSWEEP_TOKEN", token)
        .output()
        .expect("the moralsweep binary runs")
}

fn cli(args: &[&str], dir: &Path) -> Output {
    cli_with(args, dir, TOKEN)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A coordinator (short leases) over a fresh redis-server, its files in
/// `data`, its log in `log`.
struct Cluster {
    _redis: RedisServer,
    coord: Proc,
    url: String,
    data: PathBuf,
    log: PathBuf,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        Self::start_with(dir, TOKEN)
    }

    fn start_with(dir: &Path, token: &str) -> Cluster {
        let redis = RedisServer::start();
        let port = free_port();
        let data = dir.join("coord-data");
        let log = dir.join("coordinator.log");
        let coord = Proc(
            Command::new(bin())
                .args([
                    "coordinator",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--redis",
                    &redis.url(),
                    "--data-dir",
                    data.to_str().unwrap(),
                    "--lease-ttl",
                    "2",
                    "--reclaim-every",
                    "0.5",
                ])
                .env("MORALSWEEP_TOKEN", token)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        wait_for_port(port);
        Cluster {
            _redis: redis,
            coord,
            url: format!("http://127.0.0.1:{port}"),
            data,
            log,
        }
    }

    fn worker(&self, name: &str) -> Proc {
        spawn_worker(
            &self.url,
            name,
            TOKEN,
            &["--concurrency", "8", "--extend-every", "0.5"],
        )
    }

    fn status(&self, sweep: &str, dir: &Path) -> Option<serde_json::Value> {
        let out = cli(
            &["status", sweep, "--json", "--coordinator", &self.url],
            dir,
        );
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    fn wait_state(&self, sweep: &str, state: &str, dir: &Path) -> serde_json::Value {
        self.wait_for(sweep, state, dir, |_| true)
    }

    /// Waits until the sweep is in `state` and `also` holds.
    fn wait_for(
        &self,
        sweep: &str,
        state: &str,
        dir: &Path,
        also: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let t0 = Instant::now();
        loop {
            if let Some(v) = self.status(sweep, dir) {
                if v["state"] == state && also(&v) {
                    return v;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "sweep {sweep} not {state} after 90 s: {:?}\n{}",
                self.status(sweep, dir),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn submit(&self, spec: &str, dir: &Path) -> Output {
        std::fs::write(dir.join("s.toml"), spec).unwrap();
        cli(&["submit", "s.toml", "--coordinator", &self.url], dir)
    }

    fn results(&self, sweep: &str, out: &Path, extra: &[&str], dir: &Path) -> Output {
        let mut args = vec![
            "results",
            sweep,
            "--coordinator",
            &self.url,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        cli(&args, dir)
    }
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                v.push(
                    p.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    v.sort();
    v
}

#[test]
fn results_never_replaces_other_files_nor_mixes_sweeps() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    write_personas(dir, 2);
    let c = Cluster::start(dir);
    let _w = c.worker("w");
    let r = c.submit(&spec_text("first", &["g1"], 2, 1, ""), dir);
    assert!(r.status.success(), "{}", text(&r.stderr));
    c.wait_state("first", "done", dir);

    // A folder with a user's own file: refused, the file untouched.
    let mine = dir.join("mine");
    std::fs::create_dir_all(mine.join("data")).unwrap();
    std::fs::write(mine.join("data/g1_temp01.csv"), "my own ratings").unwrap();
    std::fs::write(mine.join("notes.txt"), "keep me").unwrap();
    let r = c.results("first", &mine, &[], dir);
    assert!(!r.status.success());
    let err = text(&r.stderr);
    assert!(
        err.contains("data/g1_temp01.csv") && err.contains("--force") && err.contains("2 files"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(mine.join("data/g1_temp01.csv")).unwrap(),
        "my own ratings"
    );
    assert_eq!(tree(&mine), ["data/g1_temp01.csv", "notes.txt"]);
    // With --force: the file of the same name is named before it is replaced; the other stays.
    let r = c.results("first", &mine, &["--force"], dir);
    assert!(r.status.success(), "{}", text(&r.stderr));
    let err = text(&r.stderr);
    assert!(
        err.contains("replacing") && err.contains("g1_temp01.csv"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "keep me"
    );

    // A fresh folder, then the same sweep into it again: fine.
    let out = dir.join("out");
    for _ in 0..2 {
        let r = c.results("first", &out, &[], dir);
        assert!(r.status.success(), "{}", text(&r.stderr));
    }
    let first_files = tree(&out);
    assert!(first_files.contains(&".moralsweep-results.json".to_string()));
    assert!(first_files.contains(&"data/g1_temp01.csv".to_string()));
    assert!(!first_files.iter().any(|f| f.contains("moralsweep-part")));

    // Another sweep into that folder: refused, nothing changed; with --force
    // the first sweep's files go first, so the folder never holds both.
    let r = c.submit(&spec_text("second", &["g2"], 2, 1, ""), dir);
    assert!(r.status.success(), "{}", text(&r.stderr));
    c.wait_state("second", "done", dir);
    let r = c.results("second", &out, &[], dir);
    assert!(!r.status.success());
    let err = text(&r.stderr);
    assert!(
        err.contains("sweep \"first\"") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(tree(&out), first_files);
    let r = c.results("second", &out, &["--force"], dir);
    assert!(r.status.success(), "{}", text(&r.stderr));
    assert!(
        text(&r.stderr).contains("removing the") && text(&r.stderr).contains("\"first\""),
        "{}",
        text(&r.stderr)
    );
    let now = tree(&out);
    assert!(now.contains(&"data/g2_temp01.csv".to_string()), "{now:?}");
    assert!(!now.iter().any(|f| f.contains("g1")), "{now:?}");
    let manifest = std::fs::read_to_string(out.join(".moralsweep-results.json")).unwrap();
    assert!(manifest.contains("\"second\""), "{manifest}");
}

#[test]
fn coordinator_checks_its_data_dir_and_shows_a_failed_write_until_fixed() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // A file where the data directory should be: refused at start, naming both.
    let file = dir.join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let redis = RedisServer::start();
    let out = Command::new(bin())
        .args([
            "coordinator",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--redis",
            &redis.url(),
            "--data-dir",
            file.to_str().unwrap(),
        ])
        .env("MORALSWEEP_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("--data-dir") && err.contains("not-a-dir") && err.contains("not a directory"),
        "{err}"
    );
    drop(redis);

    // A missing one is created; a sweep whose folder cannot be created (a
    // file is in the way) shows as failed with the cause, not `running` for
    // ever, and finishes once the cause is gone.
    write_personas(dir, 2);
    let c = Cluster::start(dir);
    assert!(c.data.is_dir(), "the missing --data-dir was not created");
    std::fs::write(c.data.join("blocked"), "in the way").unwrap();
    let _w = c.worker("w");
    let r = c.submit(&spec_text("blocked", &["b1"], 2, 1, ""), dir);
    assert!(r.status.success(), "{}", text(&r.stderr));
    // Failed as soon as the first unit cannot be written; wait for them all.
    let st = c.wait_for("blocked", "failed", dir, |v| v["done"] == v["total"]);
    let msgs = st["messages"].to_string();
    assert!(
        msgs.contains("writing the files failed") && msgs.contains("blocked"),
        "{st}"
    );
    assert!(
        st["units"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["state"] == "failed"
                && u["message"]
                    .as_str()
                    .unwrap()
                    .contains("writing the files failed")),
        "{st}"
    );
    // The plain status says it too.
    let plain = cli(&["status", "blocked", "--coordinator", &c.url], dir);
    let plain = text(&plain.stdout);
    assert!(
        plain.contains("blocked failed") && plain.contains("writing the files failed"),
        "{plain}"
    );
    // Results are refused while the files cannot be written.
    let r = c.results("blocked", &dir.join("o"), &[], dir);
    assert!(!r.status.success());
    assert!(
        text(&r.stderr).contains("could not be written"),
        "{}",
        text(&r.stderr)
    );
    // Fix the cause: the retry writes the files.
    std::fs::remove_file(c.data.join("blocked")).unwrap();
    c.wait_state("blocked", "done", dir);
    let r = c.results("blocked", &dir.join("o"), &[], dir);
    assert!(r.status.success(), "{}", text(&r.stderr));
    assert!(dir.join("o/data/b1_temp01.csv").is_file());
    drop(c.coord);
}

#[test]
fn cancel_keeps_the_recorded_ratings_and_delete_removes_the_sweep() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    write_personas(dir, 6);
    let c = Cluster::start(dir);
    // Slow enough (5 requests a second) to cancel mid-way.
    let spec = spec_text("cx", &["c1"], 6, 2, "rpm = 300");
    let r = c.submit(&spec, dir);
    assert!(r.status.success(), "{}", text(&r.stderr));
    let w = c.worker("w");
    let t0 = Instant::now();
    while c
        .status("cx", dir)
        .and_then(|v| v["done"].as_u64())
        .unwrap_or(0)
        < 12
    {
        assert!(t0.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Delete refuses a running sweep and says how to stop it.
    let r = cli(&["delete", "cx", "--coordinator", &c.url], dir);
    assert!(!r.status.success());
    assert!(
        text(&r.stderr).contains("moralsweep cancel cx"),
        "{}",
        text(&r.stderr)
    );
    let r = cli(&["cancel", "cx", "--coordinator", &c.url], dir);
    assert!(r.status.success(), "{}", text(&r.stderr));
    assert!(text(&r.stdout).contains("cancelled"), "{}", text(&r.stdout));
    drop(w);
    let st = c.wait_state("cx", "cancelled", dir);
    let persona_done = st["units"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["mode"] == "persona")
        .unwrap()["done"]
        .as_u64()
        .unwrap();
    assert!(
        persona_done > 0 && st["done"].as_u64() < st["total"].as_u64(),
        "{st}"
    );

    // Results of the cancelled sweep: the recorded rows, marked partial, exit 0.
    let out = dir.join("partial");
    let r = c.results("cx", &out, &[], dir);
    assert!(r.status.success(), "{}", text(&r.stderr));
    assert!(
        text(&r.stderr).contains("cancelled") && text(&r.stderr).contains("PARTIAL.txt"),
        "{}",
        text(&r.stderr)
    );
    let marker = std::fs::read_to_string(out.join("PARTIAL.txt")).unwrap();
    assert!(
        marker.contains("cancelled") && marker.contains("(partial)"),
        "{marker}"
    );
    let manifest = std::fs::read_to_string(out.join(".moralsweep-results.json")).unwrap();
    assert!(manifest.contains("\"partial\": true"), "{manifest}");
    let data = data_without_time(&out);
    let rows = &data["c1_temp01.csv"];
    // The status was taken before the fetch; a late report may add rows.
    assert!(rows.len() as u64 > persona_done, "{} rows", rows.len());
    let mut seen = std::collections::BTreeSet::new();
    for r in &rows[1..] {
        assert!(seen.insert(r[..3].to_vec()), "slot {:?} twice", &r[..3]);
        assert!(!r[3].is_empty(), "{r:?}");
    }

    // A changed spec under the same name: the error names the commands.
    let r = c.submit(&spec.replace("repetitions = 2", "repetitions = 3"), dir);
    assert!(!r.status.success());
    let err = text(&r.stderr);
    assert!(
        err.contains("moralsweep cancel cx") && err.contains("moralsweep delete cx"),
        "{err}"
    );

    // Delete: gone from the coordinator and its data directory; the name is free again.
    let r = cli(&["delete", "cx", "--coordinator", &c.url], dir);
    assert!(r.status.success(), "{}", text(&r.stderr));
    assert!(text(&r.stdout).contains("deleted"), "{}", text(&r.stdout));
    let r = cli(&["status", "cx", "--coordinator", &c.url], dir);
    assert!(!r.status.success());
    assert!(
        text(&r.stderr).contains("no sweep named"),
        "{}",
        text(&r.stderr)
    );
    assert!(
        !c.data.join("cx").exists(),
        "the sweep's files are still there"
    );
    let r = c.submit(&spec.replace("repetitions = 2", "repetitions = 3"), dir);
    assert!(r.status.success(), "{}", text(&r.stderr));
    assert!(
        text(&r.stdout).contains("submitted sweep cx"),
        "{}",
        text(&r.stdout)
    );
}

#[test]
fn status_against_a_silent_port_gives_up_with_the_url() {
    let d = tempfile::tempdir().unwrap();
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            held.push(s);
        }
    });
    let url = format!("http://127.0.0.1:{port}");
    let t0 = Instant::now();
    let r = cli(&["status", "--coordinator", &url], d.path());
    let took = t0.elapsed();
    assert!(!r.status.success());
    let err = text(&r.stderr);
    assert!(
        err.contains(&format!("waiting for the coordinator at {url}"))
            && err.contains(&format!(
                "no answer from the coordinator at {url} within 10 s"
            )),
        "{err}"
    );
    // Bounded by the 10 s default (it took about 40 s before).
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // --timeout is honoured.
    let r = cli(
        &["status", "--coordinator", &url, "--timeout", "1"],
        d.path(),
    );
    assert!(
        text(&r.stderr).contains("within 1 s"),
        "{}",
        text(&r.stderr)
    );
    // Nothing listening: a prompt error naming the URL.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let r = cli(&["status", "--coordinator", &closed], d.path());
    assert!(!r.status.success());
    assert!(text(&r.stderr).contains(&closed), "{}", text(&r.stderr));
}

#[test]
fn a_short_token_is_accepted_with_a_warning() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let c = Cluster::start_with(dir, "x");
    let r = cli_with(&["status", "--coordinator", &c.url], dir, "x");
    assert!(r.status.success(), "{}", text(&r.stderr));
    let mut worker = Command::new(bin())
        .args(["worker", "--coordinator", &c.url, "--name", "w"])
        .env("MORALSWEEP_TOKEN", "x")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = worker.kill();
    let out = worker.wait_with_output().unwrap();
    let log = std::fs::read_to_string(&c.log).unwrap();
    for what in [log, text(&out.stderr)] {
        assert!(
            what.contains("only 1 characters") && what.contains("at least 16"),
            "{what}"
        );
    }
}
