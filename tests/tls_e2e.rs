//! TLS (rustls) between workers, clients and the coordinator: certificates
//! made with `openssl` for the test, a sweep run over TLS with a token, and
//! a client that does not speak TLS or does not trust the CA is refused.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use moralsweep_testsupport::{free_port, RedisServer};

const TOKEN: &str = "tls-test-token";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for localhost / 127.0.0.1, signed by it.
fn make_certs(dir: &Path, ca_name: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        ca_name,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &a);
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &a);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

#[test]
fn sweep_over_tls_and_plaintext_refused() {
    if Command::new("openssl").arg("version").output().is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "openssl is needed for the TLS test under CI"
        );
        eprintln!("SKIPPED: openssl not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certs(d, "/CN=moralsweep-test-ca");
    let other = d.join("other");
    std::fs::create_dir_all(&other).unwrap();
    make_certs(&other, "/CN=some-other-ca");
    write_personas(d, 2);
    std::fs::write(d.join("s.toml"), spec_text("tls", &["m"], 2, 1, "")).unwrap();

    let redis = RedisServer::start();
    let port = free_port();
    let _coord = spawn_coordinator(
        port,
        &redis.url(),
        &d.join("data"),
        TOKEN,
        &["--tls-cert", "server.pem", "--tls-key", "server.key"],
        d,
    );
    let url = format!("https://localhost:{port}");
    let cli = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .current_dir(d)
            .env("MORALSWEEP_TOKEN", TOKEN)
            .output()
            .unwrap()
    };
    let r = cli(&[
        "submit",
        "s.toml",
        "--coordinator",
        &url,
        "--tls-ca",
        "ca.pem",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let _worker = Proc(
        Command::new(bin())
            .args(["worker", "--coordinator", &url, "--tls-ca", "ca.pem"])
            .current_dir(d)
            .env("MORALSWEEP_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    loop {
        let r = cli(&[
            "status",
            "tls",
            "--json",
            "--coordinator",
            &url,
            "--tls-ca",
            "ca.pem",
        ]);
        if r.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
            if v["state"] == "done" {
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "sweep over TLS not done"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = cli(&[
        "results",
        "tls",
        "--coordinator",
        &url,
        "--tls-ca",
        "ca.pem",
        "--out",
        "fetched",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(d.join("fetched/data/m_temp01.csv").exists());

    // Plain HTTP/2 to a TLS port, and a CA that did not sign the server: refused.
    let r = cli(&[
        "status",
        "--coordinator",
        &format!("http://127.0.0.1:{port}"),
    ]);
    assert!(!r.status.success());
    let r = cli(&["status", "--coordinator", &url, "--tls-ca", "other/ca.pem"]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!err.contains("panicked"), "{err}");
}
