//! Issue 21's file-safety items through the real binary: nothing is
//! written outside the folder given (each link case on a temporary folder
//! with a victim file beside it that must stay byte-identical), a fetch
//! never replaces another experiment or a user's own files silently,
//! `results` writes the provenance `run` writes, the report stays bounded
//! whatever the metric files hold, and no user file is read without a bound
//! (a FIFO or a device is refused at once instead of hanging or growing).

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use moralsweep_testsupport::{free_port, RedisServer};

const TOKEN: &str = "file-safety-test-token-0123456789";
const VICTIM: &[u8] = b"precious bytes nobody may overwrite\n";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the binary in `dir`, killing it (and failing) after `secs`: a hang
/// is a failure, not a stuck test.
fn run_within(args: &[&str], dir: &Path, secs: u64) -> Output {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("MORALSWEEP_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the moralsweep binary runs");
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "moralsweep {args:?} still ran after {secs} s:\n{}\n{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mkfifo(p: &Path) {
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

/// A file outside the folders under test.
fn victim(dir: &Path) -> PathBuf {
    let p = dir.join("victim");
    std::fs::write(&p, VICTIM).unwrap();
    p
}

fn untouched(p: &Path) {
    assert_eq!(
        std::fs::read(p).unwrap(),
        VICTIM,
        "{} was overwritten",
        p.display()
    );
}

/// A coordinator over its own redis-server and one worker.
struct Cluster {
    _redis: RedisServer,
    _coord: Proc,
    _worker: Proc,
    url: String,
    dir: PathBuf,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let redis = RedisServer::start();
        let port = free_port();
        let coord = spawn_coordinator(
            port,
            &redis.url(),
            &dir.join("coord-data"),
            TOKEN,
            &["--lease-ttl", "2", "--reclaim-every", "0.5"],
            dir,
        );
        let url = format!("http://127.0.0.1:{port}");
        let worker = spawn_worker(&url, "w", TOKEN, &["--concurrency", "8"]);
        Cluster {
            _redis: redis,
            _coord: coord,
            _worker: worker,
            url,
            dir: dir.to_path_buf(),
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        let mut v = args.to_vec();
        v.extend_from_slice(&["--coordinator", &self.url]);
        run_within(&v, &self.dir, 120)
    }

    /// Submits `spec` as `<name>.toml` and waits until the sweep is done.
    fn sweep(&self, name: &str, spec: &str) {
        let file = format!("{name}.toml");
        std::fs::write(self.dir.join(&file), spec).unwrap();
        let r = self.cli(&["submit", &file]);
        assert!(r.status.success(), "{}", text(&r.stderr));
        let t0 = Instant::now();
        loop {
            let r = self.cli(&["status", name, "--json"]);
            if r.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
                if v["state"] == "done" {
                    return;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "sweep {name} not done"
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn results(&self, sweep: &str, out: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["results", sweep, "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.cli(&args)
    }
}

fn manifest(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join(".moralsweep-results.json")).unwrap())
        .unwrap()
}

fn ok(r: &Output) -> String {
    assert!(
        r.status.success(),
        "{}\n{}",
        text(&r.stdout),
        text(&r.stderr)
    );
    text(&r.stderr)
}

fn refused(r: &Output) -> String {
    assert!(!r.status.success(), "{}", text(&r.stdout));
    text(&r.stderr)
}

/// Item 1 (results), item 12's FIFO manifest and item 13's `--out` link.
#[test]
fn results_never_writes_through_a_link_in_its_folder() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    write_personas(dir, 2);
    let c = Cluster::start(dir);
    c.sweep("s", &spec_text("s", &["g1"], 2, 2, ""));

    // `data -> ../elsewhere` with a manifest that lists `data`.
    let a = dir.join("a");
    ok(&c.results("s", &a, &[]));
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let target = victim(&elsewhere).with_file_name("g1_temp01.csv");
    std::fs::write(&target, VICTIM).unwrap();
    std::fs::remove_dir_all(a.join("data")).unwrap();
    symlink("../elsewhere", a.join("data")).unwrap();
    let mut m = manifest(&a);
    m["files"].as_array_mut().unwrap().push("data".into());
    std::fs::write(
        a.join(".moralsweep-results.json"),
        serde_json::to_string(&m).unwrap(),
    )
    .unwrap();
    let err = refused(&c.results("s", &a, &[]));
    assert!(err.contains("data (a symbolic link)"), "{err}");
    let err = refused(&c.results("s", &a, &["--force"]));
    assert!(
        err.contains("symbolic link") && err.contains("data"),
        "{err}"
    );
    untouched(&target);
    untouched(&elsewhere.join("victim"));
    assert!(std::fs::symlink_metadata(a.join("data"))
        .unwrap()
        .file_type()
        .is_symlink());

    // Links planted under the temporary names of an earlier fetch.
    let b = dir.join("b");
    ok(&c.results("s", &b, &[]));
    let v = victim(dir);
    symlink(&v, b.join("data/g1_temp01.csv.moralsweep-part")).unwrap();
    symlink(&v, b.join(".moralsweep-results.json.moralsweep-part")).unwrap();
    let err = refused(&c.results("s", &b, &[]));
    assert!(err.contains("moralsweep-part (a symbolic link)"), "{err}");
    ok(&c.results("s", &b, &["--force"]));
    untouched(&v);

    // --force over a figure that is a link out of the folder: refused and
    // named, never written through.
    let f = dir.join("f");
    ok(&c.results("s", &f, &[]));
    std::fs::remove_file(f.join("figures/sr-by-model.png")).unwrap();
    symlink("../../victim", f.join("figures/sr-by-model.png")).unwrap();
    let err = ok(&c.results("s", &f, &["--force"]));
    assert!(
        err.contains("figures/sr-by-model.png") && err.contains("symbolic link"),
        "{err}"
    );
    untouched(&v);

    // A manifest that is a FIFO: refused at once, never waited on.
    let p = dir.join("p");
    std::fs::create_dir_all(&p).unwrap();
    mkfifo(&p.join(".moralsweep-results.json"));
    let err = refused(&c.results("s", &p, &[]));
    assert!(
        err.contains(".moralsweep-results.json (not a regular file)"),
        "{err}"
    );
    let err = refused(&c.results("s", &p, &["--force"]));
    assert!(err.contains("FIFO"), "{err}");

    // `--out` a link to an empty folder: that folder.
    let real = dir.join("real");
    std::fs::create_dir_all(&real).unwrap();
    symlink(&real, dir.join("link")).unwrap();
    ok(&c.results("s", &dir.join("link"), &[]));
    assert!(real.join("data/g1_temp01.csv").is_file());
}

/// Item 2: a different experiment under the same name is refused.
#[test]
fn a_different_experiment_of_the_same_name_is_refused_without_force() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    write_personas(dir, 2);
    let c = Cluster::start(dir);
    c.sweep("s3", &spec_text("s3", &["g1"], 2, 3, ""));
    let out = dir.join("out");
    ok(&c.results("s3", &out, &[]));
    let before = std::fs::read(out.join("data/g1_temp01.csv")).unwrap();
    let sha = manifest(&out)["spec_sha256"].as_str().unwrap().to_string();
    assert_eq!(sha.len(), 64, "{sha}");
    ok(&c.cli(&["delete", "s3"]));
    c.sweep("s3", &spec_text("s3", &["g1"], 2, 2, ""));
    let err = refused(&c.results("s3", &out, &[]));
    assert!(
        err.contains("another experiment named \"s3\"") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(out.join("data/g1_temp01.csv")).unwrap(),
        before
    );
    let err = ok(&c.results("s3", &out, &["--force"]));
    assert!(err.contains("removing the"), "{err}");
    assert_ne!(manifest(&out)["spec_sha256"].as_str().unwrap(), sha);
}

/// Items 3 and 8: `--force` names the user's report, provenance and
/// figures it replaces and never adopts a file it did not write; a
/// `--no-report` fetch keeps the earlier report and says so; the
/// provenance holds the spec, its hash and the dates, and the report shows them.
#[test]
fn force_names_the_users_files_and_results_writes_the_full_provenance() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    write_personas(dir, 2);
    let c = Cluster::start(dir);
    let spec = spec_text("s", &["g1"], 2, 2, "");
    c.sweep("s", &spec);
    let out = dir.join("out");
    std::fs::create_dir_all(out.join("figures")).unwrap();
    for f in [
        "report.html",
        "provenance.json",
        "figures/sr-by-model.svg",
        "figures/mine.svg",
    ] {
        std::fs::write(out.join(f), "the user's own").unwrap();
    }
    let err = ok(&c.results("s", &out, &["--force"]));
    for f in ["report.html", "provenance.json", "figures/sr-by-model.svg"] {
        assert!(
            err.lines()
                .any(|l| l.starts_with("replacing") && l.contains(f)),
            "{f} not named: {err}"
        );
    }
    assert!(
        !err.lines()
            .any(|l| l.starts_with("replacing") && l.contains("mine.svg")),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("figures/mine.svg")).unwrap(),
        "the user's own"
    );
    let m = manifest(&out);
    let listed: Vec<&str> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .chain(m["generated"].as_array().unwrap())
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(listed.contains(&"report.html"), "{listed:?}");
    assert!(!listed.contains(&"figures/mine.svg"), "{listed:?}");

    // Item 8: the same provenance as `run`'s.
    let p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("provenance.json")).unwrap())
            .unwrap();
    use sha2::Digest;
    let want = hex::encode(sha2::Sha256::digest(spec.as_bytes()));
    assert_eq!(p["spec_sha256"], want.as_str(), "{p}");
    assert_eq!(p["spec_toml"], spec.as_str());
    assert!(
        p["created_at"].is_string() && p["finished_at"].is_string(),
        "{p}"
    );
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(page.contains(&want), "the report shows no spec hash");
    assert!(page.contains("repetitions = 2"), "the report shows no spec");

    // A re-fetch without a report keeps the earlier one and says so (the
    // user's own figure is taken away first: it would refuse the folder).
    std::fs::remove_file(out.join("figures/mine.svg")).unwrap();
    let err = ok(&c.results("s", &out, &["--no-report"]));
    assert!(
        err.contains("kept the report of the earlier fetch"),
        "{err}"
    );
    assert!(out.join("report.html").is_file() && out.join("provenance.json").is_file());
    // And a fetch into a folder holding only the user's report, without
    // --force, is refused naming it.
    let u = dir.join("u");
    std::fs::create_dir_all(&u).unwrap();
    std::fs::write(u.join("report.html"), "mine").unwrap();
    let err = refused(&c.results("s", &u, &[]));
    assert!(err.contains("report.html"), "{err}");
}

/// The papers' overall metric columns, with `rows` models.
fn metrics_dir(dir: &Path, rows: usize, r_se: &str) -> PathBuf {
    let m = dir.join("metrics");
    std::fs::create_dir_all(&m).unwrap();
    let mut s = String::from(
        "model,temperature,uncertainty,uncertainty_uncertainty,robustness,robustness_uncertainty,susceptibility,\
         susceptibility_uncertainty,uncertainty_persona_uncertainty,uncertainty_response_uncertainty,\
         susceptibility_persona_uncertainty,susceptibility_response_uncertainty,personas,questions,\
         min_runs_per_cell,median_runs_per_cell,max_runs_per_cell,family,variant\n",
    );
    for i in 0..rows {
        s.push_str(&format!(
            "m{i},0.1,0.2,0.01,{},{r_se},0.8,0.03,0.01,0.002,0.03,0.002,100,30,10,10,10,F{i},base\n",
            4.0 + i as f64 / 100.0
        ));
    }
    std::fs::write(m.join("metrics_overall.csv"), s).unwrap();
    m
}

/// Item 1 (report): a planted temporary name or figure link is never
/// written through, and `--out` a FIFO or a device is refused untouched.
#[test]
fn report_never_writes_through_a_link_nor_over_a_fifo_or_device() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let v = victim(dir);
    let sweep = dir.join("sweep");
    metrics_dir(&sweep, 3, "0.1");
    std::fs::create_dir_all(sweep.join("figures")).unwrap();
    symlink("../../victim", sweep.join("figures/sr-by-model.svg.tmp")).unwrap();
    symlink("../../victim", sweep.join("figures/sr-by-model.png.tmp")).unwrap();
    let sweep_s = sweep.to_str().unwrap();
    ok(&run_within(&["report", sweep_s], dir, 60));
    untouched(&v);
    assert!(sweep.join("figures/sr-by-model.svg").is_file());

    std::fs::remove_file(sweep.join("figures/sr-by-model.png")).unwrap();
    symlink("../../victim", sweep.join("figures/sr-by-model.png")).unwrap();
    let err = refused(&run_within(&["report", sweep_s], dir, 60));
    assert!(
        err.contains("sr-by-model.png") && err.contains("symbolic link"),
        "{err}"
    );
    untouched(&v);

    let fifo = dir.join("page.html");
    mkfifo(&fifo);
    let err = refused(&run_within(
        &["report", sweep_s, "--out", fifo.to_str().unwrap()],
        dir,
        60,
    ));
    assert!(err.contains("FIFO"), "{err}");
    let ft = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    use std::os::unix::fs::FileTypeExt;
    assert!(ft.is_fifo(), "the FIFO was replaced");
    assert!(!dir.join("figures").exists());

    let err = refused(&run_within(
        &["report", sweep_s, "--out", "/dev/null"],
        dir,
        60,
    ));
    assert!(err.contains("character device"), "{err}");
    assert!(!Path::new("/dev/figures").exists());

    // `--out` over a regular file of the user's names it (and the
    // default page of a folder, moralsweep's own, is replaced quietly).
    let mine = dir.join("mine.html");
    std::fs::write(&mine, "the user's page").unwrap();
    let err = ok(&run_within(
        &["report", sweep_s, "--out", mine.to_str().unwrap()],
        dir,
        60,
    ));
    assert!(
        err.lines()
            .any(|l| l.starts_with("replacing") && l.contains("mine.html")),
        "the replaced page is not named: {err}"
    );
    assert_ne!(std::fs::read(&mine).unwrap(), b"the user's page");
    // The link planted above is gone, so the folder's own page can be made.
    std::fs::remove_file(sweep.join("figures/sr-by-model.png")).unwrap();
    let err = ok(&run_within(&["report", sweep_s], dir, 60));
    assert!(!err.contains("replacing"), "{err}");
}

/// Item 12 for the files named by flags: a token file (`--token-file`,
/// `--ui-token-file`), a TLS certificate or key and the simulator's
/// `--em` file that are `/dev/zero` or a FIFO end at once with an error
/// naming the file, instead of growing or waiting for ever.
#[test]
fn files_behind_flags_are_read_bounded() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    mkfifo(&dir.join("fifo"));
    let nowhere = "http://127.0.0.1:9";
    for bad in ["/dev/zero", "fifo"] {
        let err = refused(&run_within(
            &["status", "--coordinator", nowhere, "--token-file", bad],
            dir,
            30,
        ));
        assert!(err.contains("token file") && err.contains(bad), "{err}");
        let err = refused(&run_within(
            &["worker", "--coordinator", nowhere, "--token-file", bad],
            dir,
            30,
        ));
        assert!(err.contains("token file") && err.contains(bad), "{err}");
    }
    let err = refused(&run_within(
        &[
            "status",
            "--coordinator",
            nowhere,
            "--token-file",
            "/dev/zero",
        ],
        dir,
        30,
    ));
    assert!(err.contains("character device"), "{err}");
    let err = refused(&run_within(
        &["status", "--coordinator", nowhere, "--token-file", "fifo"],
        dir,
        30,
    ));
    assert!(err.contains("FIFO"), "{err}");

    // The coordinator's TLS files, read before it connects to anything.
    std::fs::write(dir.join("key.pem"), "not a key").unwrap();
    let port = format!("127.0.0.1:{}", free_port());
    let err = refused(&run_within(
        &[
            "coordinator",
            "--listen",
            &port,
            "--redis",
            "redis://127.0.0.1:9",
            "--data-dir",
            "data",
            "--tls-cert",
            "/dev/zero",
            "--tls-key",
            "key.pem",
        ],
        dir,
        30,
    ));
    assert!(
        err.contains("TLS certificate")
            && err.contains("/dev/zero")
            && err.contains("character device"),
        "{err}"
    );

    // `run --ui-token-file`, an instrument file and the simulator's --em file.
    write_personas(dir, 2);
    symlink("/dev/zero", dir.join("zi.json")).unwrap();
    std::fs::write(
        dir.join("i.toml"),
        spec_text("i", &["g1"], 2, 1, "").replacen('\n', "\ninstrument = \"zi.json\"\n", 1),
    )
    .unwrap();
    let err = refused(&run_within(&["run", "i.toml", "--dry-run"], dir, 30));
    assert!(
        err.contains("zi.json") && err.contains("character device"),
        "{err}"
    );
    std::fs::write(dir.join("s.toml"), spec_text("t", &["g1"], 2, 1, "")).unwrap();
    let err = refused(&run_within(
        &[
            "run",
            "s.toml",
            "--quiet",
            "--ui",
            "127.0.0.1:0",
            "--ui-token-file",
            "/dev/zero",
        ],
        dir,
        30,
    ));
    assert!(
        err.contains("/dev/zero") && err.contains("character device"),
        "{err}"
    );
    let err = refused(&run_within(
        &["sim", "--listen", "127.0.0.1:0", "--em", "fifo"],
        dir,
        30,
    ));
    assert!(err.contains("fifo") && err.contains("FIFO"), "{err}");
}

/// Item 4: a huge but finite standard error ends (clipped, with a note).
#[test]
fn report_ends_on_a_huge_finite_standard_error() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    for se in ["9e307", "1.7976931348623157e308"] {
        let sweep = dir.join(format!("sweep-{se}"));
        metrics_dir(&sweep, 2, se);
        ok(&run_within(&["report", sweep.to_str().unwrap()], dir, 60));
        let page = std::fs::read_to_string(sweep.join("report.html")).unwrap();
        assert!(page.contains("clip"), "no note on the clipped values");
    }
}

/// Item 12: a report of more models than a figure can show degrades to
/// tables; a spec, personas file or instrument that is a FIFO or a device
/// is refused at once naming it; item 13's metric file that is a folder is
/// named.
#[test]
fn reads_are_bounded_and_reports_degrade_to_tables() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let sweep = dir.join("many");
    metrics_dir(&sweep, 600, "0.1");
    let out = ok(&run_within(&["report", sweep.to_str().unwrap()], dir, 300));
    let page = std::fs::read_to_string(sweep.join("report.html")).unwrap();
    assert!(
        page.contains("600 models"),
        "no note on the left-out figures"
    );
    assert!(!sweep.join("figures/sr-by-model.png").exists(), "{out}");

    // A spec that is a FIFO, or /dev/zero.
    write_personas(dir, 2);
    mkfifo(&dir.join("fifo.toml"));
    let err = refused(&run_within(&["run", "fifo.toml", "--dry-run"], dir, 30));
    assert!(err.contains("fifo.toml") && err.contains("FIFO"), "{err}");
    symlink("/dev/zero", dir.join("zero.toml")).unwrap();
    let err = refused(&run_within(&["run", "zero.toml", "--dry-run"], dir, 30));
    assert!(
        err.contains("zero.toml") && err.contains("character device"),
        "{err}"
    );
    // A personas file that is /dev/zero.
    symlink("/dev/zero", dir.join("zero.json")).unwrap();
    let spec = spec_text("z", &["g1"], 2, 1, "").replace("personas.json", "zero.json");
    std::fs::write(dir.join("z.toml"), spec).unwrap();
    let err = refused(&run_within(&["run", "z.toml", "--dry-run"], dir, 30));
    assert!(
        err.contains("zero.json") && err.contains("character device"),
        "{err}"
    );
    // A spec over the bound.
    let big = spec_text("b", &["g1"], 2, 1, "") + &"#".repeat(5 << 20);
    std::fs::write(dir.join("big.toml"), big).unwrap();
    let err = refused(&run_within(&["run", "big.toml", "--dry-run"], dir, 30));
    assert!(
        err.contains("big.toml") && err.contains("over the limit"),
        "{err}"
    );

    // Item 13: a folder in place of a metric file is named.
    let f = dir.join("folder");
    std::fs::create_dir_all(f.join("metrics_overall.csv")).unwrap();
    let err = refused(&run_within(&["report", f.to_str().unwrap()], dir, 30));
    assert!(
        err.contains("metrics_overall.csv") && err.contains("a folder"),
        "{err}"
    );
}
