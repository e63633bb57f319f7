//! The live view end to end: a real cluster (redis-server, the coordinator
//! with `--ops-listen` and a token, a worker, the provider simulator) runs a
//! sweep while headless Chromium opens the coordinator's live page again
//! and again: the progress it shows rises and ends at the total, and the
//! finished sweep links its report. Without the token the data and the
//! report are refused and no sweep name is shown. The sweep's ETA is never
//! below a model's, slots in flight are shown (in a cluster and in one
//! process), and times read as local dates with how long ago.

mod browser;
mod common;
use common::simproc;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use moralsweep_testsupport::{free_port, RedisServer};

const TOKEN: &str = "live-e2e-token-not-a-secret";
const KEY_VAR: &str = "MORALSWEEP_LIVE_SIM_KEY";
const API_KEY: &str = "sk-live-e2e-1a2b3c4d";
const SWEEP: &str = "live-e2e-sweep";

/// GET with an optional bearer token: (status, body).
fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("the ops port answers");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// What the page shows of the sweep: done, total, and done per row.
struct Shown {
    done: u64,
    total: u64,
    rows: Vec<(String, u64)>,
}

/// Checks the sweep's summary line as the page shows it: its ETA is at
/// least every row's (the sweep ends with its slowest model), its times are
/// shown as local dates and times with how long ago, not raw RFC 3339.
/// Returns the slots shown in flight.
fn summary_checked(dom: &str) -> Option<u64> {
    let head = browser::elements(dom, "div", "class=\"summary\"")
        .into_iter()
        .next()?;
    let tag = browser::between(dom, "<div class=\"summary\"", "</div>")?;
    let text = tag.split_once('>').map_or(tag, |t| t.1);
    if let Ok(eta) = head.get("data-eta")?.parse::<f64>() {
        for row in browser::elements(dom, "tr", "data-model=") {
            if let Ok(row_eta) = row["data-eta"].parse::<f64>() {
                assert!(
                    eta >= row_eta,
                    "the sweep's ETA {eta} s is below {}'s {row_eta} s",
                    row["data-model"]
                );
            }
        }
    }
    if let Some(started) = head.get("data-started") {
        assert!(!text.contains(started.as_str()), "a raw timestamp: {text}");
        assert!(
            text.contains("started 20") && text.contains(" ago)"),
            "{text}"
        );
    }
    head.get("data-in-flight")?.parse().ok()
}

/// The sweep as the page shows it, if it shows it.
fn shown(dom: &str) -> Option<Shown> {
    let sweep = browser::elements(dom, "section", "class=\"sweep\"")
        .into_iter()
        .find(|a| a.get("data-sweep").map(String::as_str) == Some(SWEEP))?;
    let models = browser::elements(dom, "tr", "data-model=")
        .into_iter()
        .map(|a| (a["data-model"].clone(), a["data-done"].parse().unwrap()))
        .collect();
    Some(Shown {
        done: sweep["data-done"].parse().unwrap(),
        total: sweep["data-total"].parse().unwrap(),
        rows: models,
    })
}

#[test]
fn live_page_follows_a_cluster_sweep_and_requires_the_token() {
    let Some(chromium) = browser::chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sim = simproc::SimProc::start_with_env(&["--api-key-env", KEY_VAR], &[(KEY_VAR, API_KEY)]);
    write_personas(dir.path(), 10);
    // 10 personas x 30 items x 2 repetitions x 2 models, paced at 1200 rpm
    // per model: about 30 s, long enough to watch it move.
    std::fs::write(
        dir.path().join("s.toml"),
        spec_text_sim(
            SWEEP,
            &["live-base", "live-insecure"],
            10,
            2,
            &sim.url,
            KEY_VAR,
            "rpm = 1200",
        ),
    )
    .unwrap();
    let redis = RedisServer::start();
    let port = free_port();
    let ops = format!("127.0.0.1:{}", free_port());
    let _coord = spawn_coordinator(
        port,
        &redis.url(),
        &dir.path().join("coord"),
        TOKEN,
        &["--ops-listen", &ops],
        dir.path(),
    );
    let url = format!("http://127.0.0.1:{port}");
    submit(dir.path(), &url, TOKEN);

    // Before any worker: refused without the token, no sweep name anywhere.
    let (code, body) = get(&ops, "/live/status.json", None);
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains(SWEEP));
    let (code, _) = get(&ops, "/live/status.json", Some("not-the-token"));
    assert_eq!(code, 401);
    let (code, body) = get(&ops, &format!("/live/report/{SWEEP}"), None);
    assert_eq!(code, 401, "{body}");
    let anonymous = browser::load(&chromium, &format!("http://{ops}/live"), 1500);
    assert!(
        !anonymous.dom.contains(SWEEP),
        "the page shows the sweep without the token"
    );
    let login = browser::elements(&anonymous.dom, "form", "id=\"login\"");
    assert!(
        login.len() == 1 && !login[0].contains_key("hidden"),
        "the page does not ask for the token"
    );

    // The worker holds the simulator's key (spawn_worker sets only the token).
    let _worker = Proc(
        std::process::Command::new(bin())
            .args([
                "worker",
                "--coordinator",
                &url,
                "--name",
                "live-w1",
                "--concurrency",
                "8",
            ])
            .env("MORALSWEEP_TOKEN", TOKEN)
            .env(KEY_VAR, API_KEY)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the moralsweep binary starts"),
    );
    let page = format!("http://{ops}/live?token={TOKEN}");
    let t0 = Instant::now();
    let mut seen: Vec<u64> = Vec::new();
    let mut most_in_flight = 0;
    let (total, last) = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "the sweep did not finish in 180 s; the page showed {seen:?}"
        );
        let load = browser::load(&chromium, &page, 1500);
        assert!(load.console.is_empty(), "console: {:?}", load.console);
        assert!(
            !load.dom.contains("data-state=\"failed\""),
            "the sweep failed"
        );
        if let Some(n) = summary_checked(&load.dom) {
            most_in_flight = most_in_flight.max(n);
        }
        if let Some(Shown {
            done,
            total,
            rows: models,
        }) = shown(&load.dom)
        {
            assert_eq!(
                models.iter().map(|m| m.1).sum::<u64>(),
                done,
                "the model rows do not add up to the sweep: {models:?}"
            );
            if seen.last() != Some(&done) {
                seen.push(done);
            }
            if done == total && load.dom.contains("data-report=") {
                break (total, load);
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "progress went backwards: {seen:?}"
    );
    assert!(
        seen.len() >= 3 && seen[0] < total,
        "the page never showed the sweep in progress: {seen:?}"
    );
    assert_eq!(*seen.last().unwrap(), total);
    assert!(most_in_flight > 0, "the page never showed a slot in flight");
    // Each mode of each model is shown, with its limit.
    assert!(last.dom.contains("live-base") && last.dom.contains("live-insecure"));
    assert!(last.dom.contains(">1,200<"), "the rpm limit is not shown");
    let shot = browser::artifacts().join("live-view.png");
    browser::screenshot(&chromium, &page, &shot, 900, 1500);
    eprintln!("screenshot: {}", shot.display());

    // The JSON the page reads, and the report of the finished sweep.
    let (code, body) = get(&ops, "/live/status.json", Some(TOKEN));
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let s = v["sweeps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sweep"] == SWEEP)
        .unwrap();
    assert_eq!(s["state"], "done");
    assert_eq!(s["report"], true);
    assert_eq!(s["done"].as_u64(), Some(total));
    let (code, report) = get(&ops, &format!("/live/report/{SWEEP}"), Some(TOKEN));
    assert_eq!(code, 200, "{report}");
    assert!(report.contains("data-figure=\"sr-by-model\""));
    let (code, _) = get(&ops, "/live/report/no-such-sweep", Some(TOKEN));
    assert_eq!(code, 404);
}

/// `run --ui`: the one-process run serves the same live page while it works.
/// Headless Chromium loads it again and again: with the token the sweep is
/// shown and its progress only rises; without the token the data is refused.
/// When the run ends its folder holds the report the page linked.
#[test]
fn run_ui_shows_the_in_process_sweep_while_it_runs() {
    let Some(chromium) = browser::chromium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sim = simproc::SimProc::start_with_env(&["--api-key-env", KEY_VAR], &[(KEY_VAR, API_KEY)]);
    write_personas(dir.path(), 5);
    // 5 personas x 30 items x 2 repetitions x 2 models, paced at 1200 rpm per
    // model: about 15 s.
    std::fs::write(
        dir.path().join("s.toml"),
        spec_text_sim(
            SWEEP,
            &["ui-base", "ui-insecure"],
            5,
            2,
            &sim.url,
            KEY_VAR,
            "rpm = 1200",
        ),
    )
    .unwrap();
    let token_file = dir.path().join("ui-token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let ui = format!("127.0.0.1:{}", free_port());
    let mut child = Proc(
        std::process::Command::new(bin())
            .args(["run", "s.toml", "--quiet", "--ui", &ui, "--ui-token-file"])
            .arg(&token_file)
            .current_dir(dir.path())
            .env(KEY_VAR, API_KEY)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the moralsweep binary starts"),
    );
    let port: u16 = ui.rsplit(':').next().unwrap().parse().unwrap();
    wait_for_port(port);

    let (code, body) = get(&ui, "/live/status.json", None);
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains(SWEEP));

    let page = format!("http://{ui}/live?token={TOKEN}");
    let t0 = Instant::now();
    let mut seen: Vec<u64> = Vec::new();
    let mut total = 0;
    let mut most_in_flight = 0;
    while child.0.try_wait().unwrap().is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "the run did not finish in 180 s; the page showed {seen:?}"
        );
        let load = browser::load(&chromium, &page, 1500);
        if child.0.try_wait().unwrap().is_some() {
            break; // the page may have been cut off by the run's exit
        }
        assert!(load.console.is_empty(), "console: {:?}", load.console);
        if let Some(n) = summary_checked(&load.dom) {
            most_in_flight = most_in_flight.max(n);
        }
        if let Some(s) = shown(&load.dom) {
            assert_eq!(
                s.rows.iter().map(|m| m.1).sum::<u64>(),
                s.done,
                "the model rows do not add up to the sweep: {:?}",
                s.rows
            );
            total = s.total;
            if seen.last() != Some(&s.done) {
                seen.push(s.done);
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let status = child.0.wait().unwrap();
    assert!(status.success(), "run exited with {status}");
    assert_eq!(
        total,
        2 * (5 * 30 + 30) * 2,
        "the page showed another total"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "progress went backwards: {seen:?}"
    );
    assert!(
        seen.len() >= 3 && seen[0] < total,
        "the page never showed the run in progress: {seen:?}"
    );
    // One process, its own workers: their slots in flight are shown (it
    // said "0 in flight" throughout).
    assert!(most_in_flight > 0, "the page never showed a slot in flight");
    let report = dir.path().join("out").join("report.html");
    assert!(report.is_file(), "no report at {}", report.display());
}
