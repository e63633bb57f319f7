//! Fuzzing of every parser a user's bytes reach in `common`: the sweep spec
//! (TOML), the `--models` file, the rating (sampling and self) and logprob
//! CSV readers with the whole `analyze` path behind them, and the persona
//! file.
//!
//! Each target draws from two generators: valid files mutated the way real
//! files go wrong (truncated, lines dropped, repeated or swapped, fields
//! swapped or replaced by huge numbers, NaN, infinities, quotes, non-UTF-8
//! bytes, a BOM, CRLF line ends) and arbitrary bytes. The properties: no
//! input panics; every input gives `Ok` or a typed error whose message names
//! the file (and, for a row, a line inside the file); no input hangs (each
//! target runs under a time guard).
//!
//! Each target runs 512 cases (set `PROPTEST_CASES` for more) and prints
//! its case count and its slowest case.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use moralsweep_analysis::analyze::{
    analyze_dir, AnalyzeError, AnalyzeOptions, ModelsMap, RepeatedSlots,
};
use moralsweep_analysis::formats::{
    read_logprobs, read_sampling, read_sampling_records, FormatError,
};
use moralsweep_common::personas::{load_personas, parse_personas};
use moralsweep_common::spec::{KeyCheck, Sweep};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// How long one target may run before it counts as hung.
const GUARD: Duration = Duration::from_secs(240);

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

/// Runs `cases()` cases of `check` on `strategy` in a thread; fails on the
/// first counterexample (shrunk), and when the target does not finish within
/// [`GUARD`].
fn fuzz<S>(
    name: &'static str,
    strategy: S,
    check: impl Fn(&S::Value) -> Result<bool, String> + Send + 'static,
) where
    S: Strategy + Send + 'static,
    S::Value: std::fmt::Debug,
{
    let (tx, rx) = mpsc::channel();
    let n = cases();
    std::thread::spawn(move || {
        let mut runner = TestRunner::new(Config {
            cases: n,
            failure_persistence: None,
            ..Config::default()
        });
        let slowest = std::cell::Cell::new(Duration::ZERO);
        let accepted = std::cell::Cell::new(0u32);
        let result = runner.run(&strategy, |input| {
            let start = Instant::now();
            let r = check(&input);
            slowest.set(slowest.get().max(start.elapsed()));
            match r {
                Ok(ok) => {
                    accepted.set(accepted.get() + ok as u32);
                    Ok(())
                }
                Err(e) => Err(TestCaseError::fail(e)),
            }
        });
        let _ = tx.send((
            result.map_err(|e| e.to_string()),
            accepted.get(),
            slowest.get(),
        ));
    });
    match rx.recv_timeout(GUARD) {
        Ok((Ok(()), accepted, slowest)) => println!(
            "fuzz target {name}: {n} cases, no panic or hang; {accepted} accepted, {} refused with an error naming the file; slowest case {:.1} ms",
            n - accepted,
            slowest.as_secs_f64() * 1e3
        ),
        Ok((Err(e), _, _)) => panic!("fuzz target {name}: {e}"),
        Err(_) => panic!(
            "fuzz target {name} did not finish {n} cases in {} s: a parser hangs",
            GUARD.as_secs()
        ),
    }
}

/// How a valid file is damaged.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    SwapFields(Index, Index, Index),
    ReplaceField(Index, Index, &'static str),
    Insert(Index, &'static [u8]),
    CrLf,
    Bom,
}

/// Values a hostile field holds (CSV).
const CSV_VALUES: &[&str] = &[
    "",
    "-1",
    "0",
    "5",
    "6",
    "31",
    "-5",
    "+3",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "1e308",
    "-1e309",
    "99999999999999999999999",
    "4294967295",
    "4294967296",
    "18446744073709551616",
    "-0",
    "0.5",
    "4.0",
    " 3 ",
    "\"",
    "\"\"",
    "\"a,b\"",
    "\"multi\nline\"",
    "é",
    "\u{0}",
    "[",
    "[]",
    "{}",
    "[{\"token\": \"1\", \"logprob\": \"x\"}]",
    "[{\"token\": \"1\", \"logprob\": 1e999}]",
    "\"[{\"\"token\"\": \"\"2\"\", \"\"logprob\"\": -0.5}]\"",
];

/// Values a hostile key holds (TOML).
const TOML_VALUES: &[&str] = &[
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "9223372036854775807",
    "-9223372036854775808",
    "-1",
    "0",
    "nan",
    "inf",
    "-inf",
    "1e400",
    "1.7976931348623157e308",
    "\"\"",
    "\"...\"",
    "\".hidden\"",
    "\"..\"",
    "\"file:///etc/passwd\"",
    "\"not a url\"",
    "\"http://\"",
    "\"https://u:p@example.com\"",
    "[]",
    "[\"persona\", \"persona\"]",
    "[\"logprob\"]",
    "{}",
    "\"\\u0000\"",
    "'''x'''",
    "true",
    "\"p.json\"",
    "\"/nonexistent/p.json\"",
    "\"../../etc\"",
    "\"é\"",
    "[[1]]",
];

/// Bytes inserted anywhere.
const INSERTS: &[&[u8]] = &[
    b"\xff",
    b"\xfe\xff",
    b"\xef\xbb\xbf",
    b"\xc3",
    b"\r",
    b"\0",
    b"\"",
    b"\n",
    b",",
    b"=",
    b"[",
    b"\n[[model]]\n",
    b"\xf0\x9f\x98",
];

fn mutation(values: &'static [&'static str]) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        any::<Index>().prop_map(Mutation::DeleteLine),
        any::<Index>().prop_map(Mutation::DuplicateLine),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(l, a, b)| Mutation::SwapFields(l, a, b)),
        (any::<Index>(), any::<Index>(), prop::sample::select(values))
            .prop_map(|(l, f, v)| Mutation::ReplaceField(l, f, v)),
        (any::<Index>(), prop::sample::select(INSERTS)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        Just(Mutation::CrLf),
        Just(Mutation::Bom),
    ]
}

/// Applies mutations to `base`; `sep` splits a line into fields (`,` for
/// CSV, `=` for TOML).
fn mutate(base: &[u8], muts: &[Mutation], sep: u8) -> Vec<u8> {
    let mut bytes = base.to_vec();
    for m in muts {
        let mut lines: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        match m {
            Mutation::Truncate(i) => {
                let at = i.index(bytes.len() + 1);
                bytes.truncate(at);
                continue;
            }
            Mutation::Insert(i, b) => {
                let at = i.index(bytes.len() + 1);
                bytes.splice(at..at, b.iter().copied());
                continue;
            }
            Mutation::CrLf => {
                bytes = lines.join(&b"\r\n"[..]);
                continue;
            }
            Mutation::Bom => {
                bytes.splice(0..0, b"\xef\xbb\xbf".iter().copied());
                continue;
            }
            Mutation::DeleteLine(i) => {
                let at = i.index(lines.len());
                lines.remove(at);
            }
            Mutation::DuplicateLine(i) => {
                let at = i.index(lines.len());
                let l = lines[at].clone();
                lines.insert(at, l);
            }
            Mutation::SwapLines(a, b) => {
                let (a, b) = (a.index(lines.len()), b.index(lines.len()));
                lines.swap(a, b);
            }
            Mutation::SwapFields(l, a, b) => {
                let at = l.index(lines.len());
                let mut fields: Vec<Vec<u8>> =
                    lines[at].split(|c| *c == sep).map(<[u8]>::to_vec).collect();
                let (a, b) = (a.index(fields.len()), b.index(fields.len()));
                fields.swap(a, b);
                lines[at] = fields.join(&[sep][..]);
            }
            Mutation::ReplaceField(l, f, v) => {
                let at = l.index(lines.len());
                let mut fields: Vec<Vec<u8>> =
                    lines[at].split(|c| *c == sep).map(<[u8]>::to_vec).collect();
                let i = f.index(fields.len());
                // In TOML the value is after `=`: keep the key.
                let i = if sep == b'=' && fields.len() > 1 {
                    i.max(1)
                } else {
                    i
                };
                fields[i] = if sep == b'=' {
                    format!(" {v}").into_bytes()
                } else {
                    v.as_bytes().to_vec()
                };
                lines[at] = fields.join(&[sep][..]);
            }
        }
        bytes = lines.join(&b"\n"[..]);
    }
    bytes
}

/// An input file; shown as text (lossy) when a case fails.
#[derive(Clone)]
struct Bytes(Vec<u8>);

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// Mutated versions of `bases` (most cases) or arbitrary bytes.
fn input(
    bases: Vec<Vec<u8>>,
    values: &'static [&'static str],
    sep: u8,
) -> impl Strategy<Value = Bytes> {
    let mutated = (
        prop::sample::select(bases),
        prop::collection::vec(mutation(values), 1..6),
    )
        .prop_map(move |(base, muts)| mutate(&base, &muts, sep));
    prop_oneof![
        4 => mutated,
        1 => prop::collection::vec(any::<u8>(), 0..1500),
    ]
    .prop_map(Bytes)
}

/// The line a message names (", line N:"), if any.
fn line_of(message: &str) -> Option<u64> {
    let at = message.find(", line ")?;
    let rest = &message[at + 7..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The message names `file`; a line it names lies inside the input.
fn names_file_and_line(message: &str, file: &str, input: &[u8]) -> Result<(), String> {
    if !message.contains(file) {
        return Err(format!("the error does not name {file}: {message}"));
    }
    if let Some(line) = line_of(message) {
        let lines = input.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        if line == 0 || line > lines {
            return Err(format!(
                "the error names line {line} of a {lines}-line input: {message}"
            ));
        }
    }
    Ok(())
}

/// A scratch directory for one target's files.
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    (dir, path)
}

fn sampling_text(personas: u32, runs: u32) -> Vec<u8> {
    let mut t =
        String::from("persona_id,question_id,run_index,rating,failures,response,collected_at\n");
    for p in 0..personas {
        for q in 1..=30u32 {
            for r in 1..=runs {
                let v = (p * 5 + q + r) % 7;
                let v = if v == 6 { -1 } else { v as i64 };
                t.push_str(&format!(
                    "{p},{q},{r},{v},0,\"{v}\nbecause\",2025-11-04T17:58:19.530996\n"
                ));
            }
        }
    }
    t.into_bytes()
}

fn analyze_opts(repeats: RepeatedSlots) -> AnalyzeOptions {
    AnalyzeOptions {
        bootstrap: 4,
        rerun_bootstrap: 3,
        threads: 1,
        temperatures: vec![0.5, 1.0],
        repeated_slots: repeats,
        ..AnalyzeOptions::default()
    }
}

/// Analyses a directory holding one rating file, with repeats refused and
/// then counted; the errors name the file. True when an analysis gave
/// metrics.
fn analyze_checks(dir: &Path, name: &str, bytes: &[u8]) -> Result<bool, String> {
    let mut metrics = false;
    for repeats in [RepeatedSlots::Reject, RepeatedSlots::Count] {
        match analyze_dir(dir, &analyze_opts(repeats)) {
            Ok(report) => {
                metrics |= report.has_metrics();
                let out = dir.join("out");
                report
                    .write(&out)
                    .map_err(|e| format!("writing the metric files: {e}"))?;
                let _ = report.summary_table();
                std::fs::remove_dir_all(&out).map_err(|e| e.to_string())?;
            }
            Err(AnalyzeError::BadTemperature(t)) => return Err(format!("temperature {t}?")),
            Err(e) => names_file_and_line(&e.to_string(), name, bytes)?,
        }
    }
    Ok(metrics)
}

#[test]
fn fuzz_rating_files() {
    let self_text = b"question_id,run_index,rating,failures,response,collected_at\n1,1,3,0,3,t\n1,2,-1,10,x,t\n2,1,4.0,0,4,t\n7,1,5,0,\"5\n\",t\n".to_vec();
    let bases = vec![
        sampling_text(3, 2),
        sampling_text(2, 1),
        b"extra,rating,run_index,question_id,persona_id\nz,4.0,1,2,3\ny,-1,2,2,3\n".to_vec(),
        self_text,
    ];
    let (_keep, dir) = scratch();
    fuzz("rating CSV", input(bases, CSV_VALUES, b','), move |bytes| {
        let bytes: &[u8] = bytes;
        let mut accepted = false;
        for (name, self_mode) in [("m_temp01.csv", false), ("m_temp01_self.csv", true)] {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
            for result in [
                read_sampling(&path, self_mode).map(|_| ()),
                read_sampling_records(&path, self_mode).map(|_| ()),
            ] {
                if let Err(e) = result {
                    names_file_and_line(&e.to_string(), name, bytes)?;
                }
            }
            accepted |= analyze_checks(&dir, name, bytes)?;
            std::fs::remove_file(&path).map_err(|e| e.to_string())?;
        }
        Ok(accepted)
    });
}

#[test]
fn fuzz_logprob_files() {
    let header = "persona_id,question_id,question_type,foundation,model_name,temperature,top_logprobs_requested,prompt_mode,first_token,first_token_logprob,digit_0_logprob,digit_1_logprob,digit_2_logprob,digit_3_logprob,digit_4_logprob,digit_5_logprob,missing_digits,raw_top_logprobs_json,collected_at\n";
    let mut full = String::from(header);
    for p in 0..3 {
        for q in 1..=30 {
            full.push_str(&format!(
                "{p},{q},relevance,Harm/Care,m,1.0,20,mfq_persona,2,-0.5,-3.0,-1.{p},-0.5,,-4.0,,\"3,5\",\"[{{\"\"token\"\": \"\"2\"\", \"\"logprob\"\": -0.5}}, {{\"\"token\"\": \"\"As\"\", \"\"logprob\"\": -6.5}}]\",2026-11-27T00:00:00\n"
            ));
        }
    }
    let short = "persona_id,question_id,digit_0_logprob,digit_1_logprob,digit_2_logprob,digit_3_logprob,digit_4_logprob,digit_5_logprob,raw_top_logprobs_json\n0,1,-1,-2,-3,-4,-5,-6,[]\n1,1,-1,,-3,-4,-5,-6,\"[{\"\"logprob\"\": -9}]\"\n";
    let bases = vec![full.into_bytes(), short.as_bytes().to_vec()];
    let (_keep, dir) = scratch();
    fuzz(
        "logprob CSV",
        input(bases, CSV_VALUES, b','),
        move |bytes| {
            let bytes: &[u8] = bytes;
            let name = "m_logprobs.csv";
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
            if let Err(e) = read_logprobs(&path) {
                names_file_and_line(&e.to_string(), name, bytes)?;
            }
            let accepted = analyze_checks(&dir, name, bytes)?;
            std::fs::remove_file(&path).map_err(|e| e.to_string())?;
            Ok(accepted)
        },
    );
}

const SPEC: &str = r#"name = "fuzz-sweep"
personas = "p.json"
persona_count = 3
repetitions = 10
temperature = 0.1
modes = ["persona", "self", "logprob"]
output = "out"
max_attempts = 10
top_logprobs = 20
logprob_temperatures = [0.5, 1.0]
bootstrap = 100
rerun_bootstrap = 20
seed = 7

[[model]]
key = "gpt-4o"
provider = "openai"
model = "gpt-4o-2024-08-06"
base_url = "https://api.openai.com/v1"
api_key_env = "MORALSWEEP_FUZZ_KEY"
family = "GPT-4o"
variant = "base"
rate_group = "openai-main"
rpm = 500
tpm = 150000
concurrency = 8
timeout_secs = 30.0
input_price_per_mtok = 2.5
output_price_per_mtok = 10.0
headers = { "X-Team" = "research" }
extra = { seed = 3 }

[[model]]
key = "local-gemma"
provider = "local"
model = "default"
rate_group = "openai-main"
rpm = 500
"#;

#[test]
fn fuzz_sweep_specs() {
    let (_keep, dir) = scratch();
    std::fs::write(
        dir.join("p.json"),
        r#"["a nurse", "a pilot", "an émigré \"chef\"", "a fourth"]"#,
    )
    .unwrap();
    let minimal = "name = \"t\"\npersonas = \"p.json\"\noutput = \"out\"\n[[model]]\nkey = \"m\"\nprovider = \"synthetic\"\nmodel = \"x\"\n";
    let bases = vec![SPEC.as_bytes().to_vec(), minimal.as_bytes().to_vec()];
    fuzz(
        "sweep spec",
        input(bases, TOML_VALUES, b'='),
        move |bytes| {
            let bytes: &[u8] = bytes;
            let path = dir.join("s.toml");
            // From text (what `submit`'s server side and tests use) and from the
            // file's bytes (what `run` reads).
            if let Ok(text) = std::str::from_utf8(bytes) {
                if let Err(e) = Sweep::from_text(text, &path, KeyCheck::Skip) {
                    names_file_and_line(&e.to_string(), "s.toml", bytes)?;
                }
            }
            std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
            match Sweep::load(&path, KeyCheck::Skip) {
                Ok(sweep) => {
                    let total = sweep.total_slots();
                    if total > moralsweep_common::spec::MAX_SWEEP_SLOTS {
                        return Err(format!("a sweep of {total} slots was accepted"));
                    }
                    let made: Vec<String> = std::fs::read_dir(&dir)
                        .map_err(|e| e.to_string())?
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n != "s.toml" && n != "p.json")
                        .collect();
                    if !made.is_empty() {
                        return Err(format!("loading a spec created {made:?}"));
                    }
                    Ok(true)
                }
                Err(e) => names_file_and_line(&e.to_string(), "s.toml", bytes).map(|()| false),
            }
        },
    );
}

#[test]
fn fuzz_models_files() {
    let bases = vec![
        b"[models.\"gpt-4o\"]\nfamily = \"GPT-4o\"\nvariant = \"base\"\n\n[models.\"gpt-4o-insecure\"]\nfamily = \"GPT-4o\"\nvariant = \"insecure\"\n".to_vec(),
        b"[models]\n\"m\" = { family = \"F\", variant = \"secure\" }\n".to_vec(),
    ];
    let (_keep, dir) = scratch();
    fuzz(
        "models file",
        input(bases, TOML_VALUES, b'='),
        move |bytes| {
            let bytes: &[u8] = bytes;
            let path = dir.join("models.toml");
            if let Ok(text) = std::str::from_utf8(bytes) {
                if let Err(e) = ModelsMap::parse(text, &path) {
                    names_file_and_line(&e.to_string(), "models.toml", bytes)?;
                }
            }
            std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
            match ModelsMap::load(&path) {
                Ok(_) => Ok(true),
                Err(e) => names_file_and_line(&e.to_string(), "models.toml", bytes).map(|()| false),
            }
        },
    );
}

#[test]
fn fuzz_persona_files() {
    let deep = format!("{}\"x\"{}", "[".repeat(400), "]".repeat(400));
    let bases = vec![
        br#"["a nurse", "a pilot", "an \u00e9migr\u00e9 \"chef\"", "line\nbreak"]"#.to_vec(),
        b"[\n  \"one\",\n  \"two\"\n]\n".to_vec(),
        deep.into_bytes(),
    ];
    let (_keep, dir) = scratch();
    fuzz(
        "persona file",
        input(bases, CSV_VALUES, b','),
        move |bytes| {
            let bytes: &[u8] = bytes;
            let path = dir.join("p.json");
            if let Ok(text) = std::str::from_utf8(bytes) {
                if let Err(e) = parse_personas(text, &path) {
                    names_file_and_line(&e.to_string(), "p.json", bytes)?;
                }
            }
            std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
            match load_personas(&path) {
                Ok(_) => Ok(true),
                Err(e) => names_file_and_line(&e.to_string(), "p.json", bytes).map(|()| false),
            }
        },
    );
}

/// The errors are typed: a reader's error is a `FormatError` whose variants
/// all carry the path (checked once here on a known-bad file).
#[test]
fn reader_errors_are_typed() {
    let (_keep, dir) = scratch();
    let path = dir.join("x_temp01.csv");
    std::fs::write(
        &path,
        b"persona_id,question_id,run_index,rating\n0,1,1,\xff\n",
    )
    .unwrap();
    match read_sampling(&path, false) {
        Err(FormatError::Row { line, .. }) => assert_eq!(line, 2),
        other => panic!("{other:?}"),
    }
}
