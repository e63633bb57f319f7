//! A user's own instrument file on the cluster: `submit` reads it where the
//! spec is and sends its text with the spec, so neither the coordinator nor
//! the workers (started elsewhere, without the file) need a copy; the sweep
//! runs the file's 44 items and names them in its rating file.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use moralsweep_testsupport::{free_port, RedisServer};

const TOKEN: &str = "instrument-cluster-token";

fn cli(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("MORALSWEEP_TOKEN", TOKEN)
        .output()
        .unwrap()
}

#[test]
fn a_user_instrument_file_travels_with_the_spec() {
    let spec_dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    // The BFI-44 under another name, as a user's own file beside the spec.
    std::fs::write(
        spec_dir.path().join("mine.json"),
        include_str!("../common/instruments/bfi-44.json").replace("\"bfi-44\"", "\"mine\""),
    )
    .unwrap();
    write_personas(spec_dir.path(), 2);
    let spec =
        spec_text("uc", &["m"], 2, 1, "").replacen("\n", "\ninstrument = \"mine.json\"\n", 1);
    std::fs::write(spec_dir.path().join("s.toml"), spec).unwrap();

    let redis = RedisServer::start();
    let port = free_port();
    let data = elsewhere.path().join("data");
    let _coord = spawn_coordinator(port, &redis.url(), &data, TOKEN, &[], elsewhere.path());
    let url = format!("http://127.0.0.1:{port}");
    let mut worker = Command::new(bin());
    worker
        .args(["worker", "--coordinator", &url, "--name", "w"])
        .current_dir(elsewhere.path())
        .env("MORALSWEEP_TOKEN", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _worker = Proc(worker.spawn().unwrap());
    submit(spec_dir.path(), &url, TOKEN);

    let t0 = Instant::now();
    loop {
        let out = cli(
            &["status", "uc", "--json", "--coordinator", &url],
            spec_dir.path(),
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v["state"] == "done" {
            assert_eq!(v["total"], 2 * 44 + 44, "{v}"); // persona and self
            break;
        }
        assert_ne!(v["state"], "failed", "{v}");
        assert!(t0.elapsed() < Duration::from_secs(120), "not done: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let fetched = spec_dir.path().join("fetched");
    let out = cli(
        &[
            "results",
            "uc",
            "--coordinator",
            &url,
            "--out",
            fetched.to_str().unwrap(),
        ],
        spec_dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(fetched.join("data/m_temp01.csv")).unwrap();
    let items: std::collections::BTreeSet<u32> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(items, (1..=44).collect());
    // The file's 1-5 scale reads the answers: the synthetic model's "0" is
    // refused (no rating, -1), never recorded as a 0 as the MFQ-30 would.
    let ratings: Vec<i32> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    assert!(ratings.iter().all(|r| *r == -1 || (1..=5).contains(r)));
    assert!(ratings.iter().filter(|r| **r >= 1).count() > ratings.len() / 2);
}
