//! `moralsweep analyze` on the folders and files a careless or hostile user
//! hands it, through the real binary: a slot recorded twice is an error
//! naming the file and both lines; what the metrics leave out is reported
//! in `dropped.csv` and the printed summary; directory links are never
//! followed (no hang on `up -> ..`) and a dangling link or a stray file is
//! skipped with a note; a file with a header and no rows is an error; CSV
//! errors give the file's line numbers.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const HEADER: &str = "persona_id,question_id,run_index,rating,failures,response,collected_at\n";

/// Runs `analyze` with small bootstraps; killed after 90 s (a hang fails the
/// test instead of blocking the suite).
fn analyze(dir: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut child = Command::new(bin())
        .arg("analyze")
        .arg(dir)
        .arg("--out")
        .arg(out)
        .args(["--bootstrap", "20", "--rerun-bootstrap", "10"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run moralsweep analyze");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!(
                "analyze {} did not finish in 90 s (a walk that loops?)\n{}",
                dir.display(),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The binary under test (`MORALSWEEP_TEST_BIN` runs these checks against
/// another build, e.g. an installed one).
fn bin() -> String {
    std::env::var("MORALSWEEP_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_moralsweep").to_string())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `personas` personas x 30 items x `runs` runs with varied ratings.
fn sampling(personas: u32, runs: u32) -> String {
    let mut t = String::from(HEADER);
    for p in 0..personas {
        for q in 1..=30u32 {
            for r in 1..=runs {
                let v = (p * 7 + q * 3 + r * (p % 3)) % 6;
                let _ = writeln!(t, "{p},{q},{r},{v},0,{v},2025-01-01T00:00:00");
            }
        }
    }
    t
}

#[test]
fn a_repeated_slot_is_an_error_naming_the_file_and_both_lines() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut t = sampling(4, 3);
    // Persona 2, question 7, run 2 again at the end of the file.
    t.push_str("2,7,2,5,0,5,2025-01-01T00:00:00\n");
    let lines = t.lines().count() as u64;
    // Its first row: header, then 2 personas x 90 rows, 6 items x 3, run 2.
    let first = 1 + 2 * 90 + 6 * 3 + 2;
    std::fs::write(data.join("m_temp01.csv"), &t).unwrap();
    let out = d.path().join("out");
    let o = analyze(&data, &out, &[]);
    let err = text(&o.stderr);
    assert!(!o.status.success(), "repeats accepted: {err}");
    assert!(
        err.contains("m_temp01.csv")
            && err.contains(&format!("line {lines}"))
            && err.contains(&format!("line {first}"))
            && err.contains("persona 2, question 7, run_index 2"),
        "{err}"
    );
    assert!(!out.exists(), "metric files written despite the error");

    // Counting repeats is an explicit choice, with a warning.
    let o = analyze(&data, &out, &["--allow-repeated-slots"]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("warning") && err.contains("repeat"), "{err}");

    // A self file: (question, run_index).
    std::fs::remove_file(data.join("m_temp01.csv")).unwrap();
    std::fs::write(
        data.join("m_self.csv"),
        "question_id,run_index,rating,failures,response,collected_at\n1,1,3,0,3,t\n2,1,4,0,4,t\n1,1,2,0,2,t\n",
    )
    .unwrap();
    let o = analyze(&data, &out, &[]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("m_self.csv") && err.contains("line 4") && err.contains("line 2"),
        "{err}"
    );

    // A logprob file: (persona, question) twice, handled the same way.
    std::fs::remove_file(data.join("m_self.csv")).unwrap();
    let mut lp = String::from("persona_id,question_id,digit_0_logprob,digit_1_logprob,digit_2_logprob,digit_3_logprob,digit_4_logprob,digit_5_logprob,raw_top_logprobs_json\n");
    for p in 0..3 {
        for q in 1..=30 {
            let _ = writeln!(lp, "{p},{q},-3,-2,-1,-0.5,-{p}.5,-4,[]");
        }
    }
    lp.push_str("1,4,-1,-1,-1,-1,-1,-1,[]\n");
    std::fs::write(data.join("m_logprobs.csv"), &lp).unwrap();
    let o = analyze(&data, &out, &[]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("m_logprobs.csv")
            && err.contains("line 92")
            && err.contains("line 35")
            && err.contains("persona 1, question 4"),
        "{err}"
    );
    let o = analyze(&data, &out, &["--allow-repeated-slots"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

#[test]
fn dropped_personas_and_items_are_reported_in_a_file_and_the_summary() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Persona 5 is cut short after item 12 (a truncated file), persona 2
    // has only -1 ratings for item 3, item 30 is in no row at all.
    let mut t = String::from(HEADER);
    for line in sampling(6, 2).lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (p, q): (u32, u32) = (f[0].parse().unwrap(), f[1].parse().unwrap());
        if q == 30 || (p == 5 && q > 12) {
            continue;
        }
        if p == 2 && q == 3 {
            let _ = writeln!(t, "{},{},{},-1,10,none,t", f[0], f[1], f[2]);
            continue;
        }
        t.push_str(line);
        t.push('\n');
    }
    std::fs::write(data.join("m_temp01.csv"), &t).unwrap();
    let out = d.path().join("out");
    let o = analyze(&data, &out, &[]);
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{}", text(&o.stderr));
    // The papers' columns are unchanged; the report is a sidecar file.
    let metrics = std::fs::read_to_string(out.join("persona_moral_metrics.csv")).unwrap();
    assert!(
        metrics.starts_with("model,temperature,uncertainty,"),
        "{metrics}"
    );
    let dropped = std::fs::read_to_string(out.join("dropped.csv")).unwrap();
    let rows: Vec<&str> = dropped.lines().collect();
    assert_eq!(
        rows[0],
        "model,temperature,source_file,dropped,id,reason,temperature_setting"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("m,0.1,m_temp01.csv,persona,5,")
                && r.contains("no row for items 13-29")),
        "{dropped}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("m,0.1,m_temp01.csv,persona,2,")
                && r.contains("only -1")
                && r.contains("item 3")),
        "{dropped}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("m,0.1,m_temp01.csv,item,30,") && r.contains("no row")),
        "{dropped}"
    );
    assert_eq!(rows.len(), 4, "{dropped}");
    assert!(
        stdout.contains("left out")
            && stdout.contains("2 personas")
            && stdout.contains("1 item")
            && stdout.contains("dropped.csv"),
        "{stdout}"
    );
}

#[cfg(unix)]
#[test]
fn directory_links_are_not_followed_and_strays_are_skipped_with_a_note() {
    use std::os::unix::fs::symlink;
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let mut dir = data.clone();
    // Two links to directories per level, three levels: a walk that follows
    // them never ends.
    for level in 0..3 {
        std::fs::create_dir_all(&dir).unwrap();
        symlink("..", dir.join("up")).unwrap();
        symlink(".", dir.join("self")).unwrap();
        dir = dir.join(format!("level{level}"));
    }
    std::fs::write(data.join("level0/m_temp01.csv"), sampling(3, 2)).unwrap();
    symlink(
        data.join("nowhere_temp01.csv"),
        data.join("gone_temp01.csv"),
    )
    .unwrap();
    std::fs::write(data.join("notes.txt"), "my notes").unwrap();
    // A link to a rating file is read.
    std::fs::write(d.path().join("k_temp01.csv"), sampling(3, 2)).unwrap();
    symlink(d.path().join("k_temp01.csv"), data.join("k_temp01.csv")).unwrap();
    let out = d.path().join("out");
    let o = analyze(&data, &out, &[]);
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    for needle in [
        "note: gone_temp01.csv: skipped",
        "note: notes.txt: skipped: not a rating file",
        "note: up: skipped: a link to a directory",
        "note: level0/self: skipped: a link to a directory",
    ] {
        assert!(err.contains(needle), "no {needle:?} in\n{err}");
    }
    let metrics = std::fs::read_to_string(out.join("persona_moral_metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 3, "{metrics}");
    assert!(metrics.contains("level0/m_temp01.csv") && metrics.contains("\nk,"));
}

#[test]
fn a_file_without_rows_is_an_error_and_nothing_is_written() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("m_temp01.csv"), HEADER).unwrap();
    let out = d.path().join("out");
    let o = analyze(&data, &out, &[]);
    let err = text(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("m_temp01.csv") && err.contains("no rating rows"),
        "{err}"
    );
    assert!(!out.exists());

    // Rows, but none usable: an error too, not empty metric files.
    let mut t = String::from(HEADER);
    for p in 0..3 {
        for q in 1..=30 {
            let _ = writeln!(t, "{p},{q},1,-1,10,none,t");
        }
    }
    std::fs::write(data.join("m_temp01.csv"), &t).unwrap();
    let o = analyze(&data, &out, &[]);
    let err = text(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("no metric could be computed") && err.contains("m_temp01.csv"),
        "{err}"
    );
    assert!(!out.exists());
}

#[test]
fn csv_errors_give_file_lines() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Three multi-line responses before the bad row: its data-row count (4)
    // and its file line (8) differ.
    let mut t = String::from(HEADER).into_bytes();
    for r in 1..=3 {
        t.extend_from_slice(format!("0,1,{r},3,0,\"3\nbecause\",t\n").as_bytes());
    }
    t.extend_from_slice(b"0,2,1,3,0,3\n");
    std::fs::write(data.join("m_temp01.csv"), &t).unwrap();
    let o = analyze(&data, &d.path().join("out"), &[]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("line 8") && !err.contains("record"), "{err}");

    // Non-UTF-8 bytes in a logprob file.
    std::fs::remove_file(data.join("m_temp01.csv")).unwrap();
    let mut lp = b"persona_id,question_id,digit_0_logprob,digit_1_logprob,digit_2_logprob,digit_3_logprob,digit_4_logprob,digit_5_logprob,raw_top_logprobs_json\n".to_vec();
    lp.extend_from_slice(b"0,1,-1,-1,-1,-1,-1,-1,\"[\n]\"\n");
    lp.extend_from_slice(b"0,2,-1,-1,-1,-1,-1,-1,\"[\n]\"\n");
    lp.extend_from_slice(b"0,3,-1,-1,-1,-1,-1,-1,\"\xff\xfe\"\n");
    std::fs::write(data.join("m_logprobs.csv"), &lp).unwrap();
    let o = analyze(&data, &d.path().join("out"), &[]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("m_logprobs.csv")
            && err.contains("line 6")
            && err.contains("UTF-8")
            && !err.contains("record"),
        "{err}"
    );
}
