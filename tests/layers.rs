//! The crates form one-way layers. From the bottom:
//!
//! 0. `moralsweep-userfs` (reading a user's file, writing a user's folder),
//!    `moralsweep-proto`, `moralsweep-telemetry`: no workspace dependency;
//! 1. `moralsweep-common`, the domain (userfs);
//! 2. `moralsweep-analysis` (common, userfs), `moralsweep-protocol`
//!    (common, proto), `moralsweep-local` (common);
//! 3. `moralsweep-report`, `moralsweep-simulator` (common, analysis);
//! 4. `moralsweep-coordinator`, `moralsweep-worker`: layers 0-3, never each
//!    other;
//! 5. `moralsweep`, the binary: everything, and the in-process glue between
//!    coordinator and worker.
//!
//! `moralsweep-testsupport` stands outside the layers: it depends on no
//! workspace crate and is only ever a dev-dependency.
//!
//! A crate may depend (normally or for building) only on crates of a lower
//! layer; the worker's dependency tree holds no store (redis, redb,
//! tempfile) and no analysis, and without its default feature no local
//! model. The tree is
//! that of what the worker links (`-e normal`): `tempfile` does appear among
//! build-dependencies, through `prost-build`, the gRPC code generator of
//! `moralsweep-proto`, which runs at build time and is not linked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

const LAYERS: &[(&str, u32)] = &[
    ("moralsweep-userfs", 0),
    ("moralsweep-proto", 0),
    ("moralsweep-telemetry", 0),
    ("moralsweep-common", 1),
    ("moralsweep-analysis", 2),
    ("moralsweep-protocol", 2),
    ("moralsweep-local", 2),
    ("moralsweep-report", 3),
    ("moralsweep-simulator", 3),
    ("moralsweep-coordinator", 4),
    ("moralsweep-worker", 4),
    ("moralsweep", 5),
];

const DEV_ONLY: &str = "moralsweep-testsupport";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(repo());
    c
}

fn run(mut c: Command) -> String {
    let out = c.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "{c:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("cargo prints UTF-8")
}

#[test]
fn every_workspace_crate_depends_only_on_lower_layers() {
    let mut c = cargo();
    c.args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ]);
    let meta: serde_json::Value = serde_json::from_str(&run(c)).expect("cargo metadata is JSON");
    let layer: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut seen = Vec::new();
    let mut wrong = Vec::new();
    for pkg in meta["packages"].as_array().expect("packages") {
        let name = pkg["name"].as_str().expect("name");
        seen.push(name.to_string());
        if name == DEV_ONLY {
            for d in pkg["dependencies"].as_array().expect("dependencies") {
                let dep = d["name"].as_str().unwrap_or("");
                if dep.starts_with("moralsweep") {
                    wrong.push(format!("{DEV_ONLY} depends on {dep}; it must stand alone"));
                }
            }
            continue;
        }
        let Some(&own) = layer.get(name) else {
            wrong.push(format!(
                "workspace crate {name} has no layer: add it to LAYERS in tests/layers.rs"
            ));
            continue;
        };
        for d in pkg["dependencies"].as_array().expect("dependencies") {
            let dep = d["name"].as_str().unwrap_or("");
            if !dep.starts_with("moralsweep") {
                continue;
            }
            let dev = d["kind"].as_str() == Some("dev");
            if dep == DEV_ONLY {
                if !dev {
                    wrong.push(format!("{name} depends on {DEV_ONLY} outside its tests"));
                }
                continue;
            }
            let Some(&theirs) = layer.get(dep) else {
                wrong.push(format!("{name} depends on {dep}, which has no layer"));
                continue;
            };
            // Tests may use a crate below or beside (the worker's tests run
            // the simulator); the library itself only what lies below.
            if !dev && theirs >= own {
                wrong.push(format!(
                    "{name} (layer {own}) depends on {dep} (layer {theirs}): only lower layers are allowed"
                ));
            }
        }
    }
    for (name, _) in LAYERS {
        assert!(
            seen.iter().any(|s| s == name),
            "{name} is in LAYERS but not in the workspace"
        );
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn worker_tree(extra: &[&str]) -> String {
    let mut c = cargo();
    c.args([
        "tree",
        "--offline",
        "--locked",
        "-p",
        "moralsweep-worker",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ]);
    c.args(extra);
    run(c)
}

fn crates_in(tree: &str) -> Vec<String> {
    tree.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_worker_builds_no_store_and_no_coordinator() {
    let crates = crates_in(&worker_tree(&[]));
    assert!(
        crates.iter().any(|c| c == "moralsweep-protocol"),
        "{crates:?}"
    );
    assert!(
        crates.iter().any(|c| c == "moralsweep-local"),
        "the local model is on by default"
    );
    for banned in [
        "redis",
        "redb",
        "tempfile",
        "moralsweep-coordinator",
        "moralsweep-analysis",
    ] {
        assert!(
            !crates.iter().any(|c| c == banned),
            "the worker's dependency tree contains {banned}"
        );
    }
}

#[test]
fn a_worker_without_default_features_has_no_local_model() {
    let crates = crates_in(&worker_tree(&["--no-default-features"]));
    assert!(
        !crates.iter().any(|c| c == "moralsweep-local"),
        "moralsweep-local is in the tree of a worker built without `local`"
    );
}
