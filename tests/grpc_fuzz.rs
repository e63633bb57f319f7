//! Property-based fuzzing of every gRPC message the coordinator accepts,
//! against a real coordinator process over a socket (with its own
//! redis-server): arbitrary and mutated SubmitSweep, Lease, Report,
//! ExtendLeases, AcquirePermits, Throttled, Usage, GetSweep, CancelSweep and
//! FetchResults messages, arbitrary bytes as the payload of a well-framed
//! gRPC call to every method, and arbitrary bytes as the whole HTTP/2 body
//! (broken framing included). After every case the process still answers
//! a health call; every error is a proper status code; and a finished
//! sweep's recorded data is the same at the end as before the garbage.
//!
//! Cases per target: 48, or `PROPTEST_CASES`; each target prints its count.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use common::*;
use moralsweep_proto::v1 as pb;
use moralsweep_testsupport::{free_port, RedisServer};
use moralsweep_worker::client::{channel, sweeps_client, workers_client, Authed, ConnectOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

const TOKEN: &str = "grpc-fuzz-token-0123456789abcdef";

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48)
}

/// Status codes a coordinator may answer garbage with. `Internal` only for
/// bytes that do not decode as the method's message (tonic's own answer).
fn proper(s: &Status, raw: bool) -> bool {
    match s.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::ResourceExhausted => true,
        Code::Internal => raw,
        _ => false,
    }
}

fn check<T>(what: &str, r: Result<T, Status>, raw: bool) -> Result<(), TestCaseError> {
    match r {
        Ok(_) => Ok(()),
        Err(s) if proper(&s, raw) => Ok(()),
        Err(s) => Err(TestCaseError::fail(format!(
            "{what}: improper answer {:?}: {}",
            s.code(),
            s.message()
        ))),
    }
}

/// Names that hit the known sweeps, models, modes and groups, or not.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("fz".to_string()),
        Just("live".to_string()),
        Just("m".to_string()),
        Just("persona".to_string()),
        Just("self".to_string()),
        Just("logprob".to_string()),
        "[a-z./-]{0,12}",
        any::<String>(),
    ]
}

fn number() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..200, Just(u32::MAX), any::<u32>()]
}

fn big() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..10_000, Just(u64::MAX), any::<u64>()]
}

fn outcome() -> impl Strategy<Value = Option<pb::slot_result::Outcome>> {
    use pb::slot_result::Outcome as O;
    prop_oneof![
        Just(None),
        (any::<i32>(), any::<u32>(), any::<String>(), any::<String>()).prop_map(
            |(rating, failures, response, collected_at)| Some(O::Sample(pb::SampleResult {
                rating: rating % 8,
                failures,
                response,
                collected_at,
            }))
        ),
        (
            any::<String>(),
            any::<f64>(),
            proptest::collection::vec(any::<f64>(), 0..8),
            proptest::collection::vec(any::<bool>(), 0..8),
            any::<String>(),
            any::<u32>()
        )
            .prop_map(|(t, l, d, p, raw, n)| Some(O::Logprob(pb::LogprobResult {
                first_token: t,
                first_token_logprob: l,
                digit_logprobs: d,
                present: p,
                raw_top_logprobs_json: raw,
                top_logprobs_requested: n,
                collected_at: String::new(),
            }))),
        any::<String>().prop_map(|m| Some(O::Fatal(m))),
    ]
}

/// A result for any unit, or one aimed at a recorded slot of the finished
/// sweep (every outcome there, a fatal one included, must change nothing).
/// A worker's usage entry: any counts, any cost (NaN, infinite, negative
/// included), for the fuzzed sweep's model or any name.
fn model_usage() -> impl Strategy<Value = pb::ModelUsage> {
    (
        (name(), name()),
        (any::<u64>(), any::<u64>(), any::<u64>()),
        (any::<u64>(), any::<u64>()),
        (any::<f64>(), any::<bool>(), any::<u64>()),
    )
        .prop_map(
            |(
                (sweep, model),
                (requests, input_tokens, output_tokens),
                (rate_limited, retries),
                (usd, priced, version),
            )| {
                pb::ModelUsage {
                    sweep,
                    model,
                    requests,
                    input_tokens,
                    output_tokens,
                    rate_limited,
                    retries,
                    usd,
                    priced,
                    version,
                }
            },
        )
}

fn slot_result() -> impl Strategy<Value = pb::SlotResult> {
    prop_oneof![any_slot_result(), aimed_slot_result()]
}

fn aimed_slot_result() -> impl Strategy<Value = pb::SlotResult> {
    (
        prop_oneof![Just("persona"), Just("self"), Just("logprob")],
        0u32..60,
        outcome(),
    )
        .prop_map(|(mode, slot, outcome)| pb::SlotResult {
            lease_id: String::new(),
            sweep: "fz".into(),
            model: "m".into(),
            mode: mode.into(),
            slot,
            outcome,
        })
}

fn any_slot_result() -> impl Strategy<Value = pb::SlotResult> {
    (name(), name(), name(), name(), number(), outcome()).prop_map(
        |(lease_id, sweep, model, mode, slot, outcome)| pb::SlotResult {
            lease_id,
            sweep,
            model,
            mode,
            slot: slot % 200,
            outcome,
        },
    )
}

/// A valid spec with one value replaced by garbage, or garbage outright.
fn spec_text_mutated() -> impl Strategy<Value = String> {
    let base = spec_text("fuzzed", &["m"], 2, 1, "");
    let lines: Vec<String> = base.lines().map(String::from).collect();
    let n = lines.len();
    prop_oneof![
        (0..n, "[ -~]{0,24}").prop_map(move |(i, junk)| {
            let mut l = lines.clone();
            l[i] = match l[i].split_once('=') {
                Some((k, _)) => format!("{k}= {junk}"),
                None => junk,
            };
            l.join("\n")
        }),
        any::<String>(),
    ]
}

/// Passes a message's bytes through as they are.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

const METHODS: [&str; 19] = [
    "/moralsweep.v1.Sweeps/SubmitSweep",
    "/moralsweep.v1.Sweeps/ListSweeps",
    "/moralsweep.v1.Sweeps/GetSweep",
    "/moralsweep.v1.Sweeps/WatchProgress",
    "/moralsweep.v1.Sweeps/CancelSweep",
    "/moralsweep.v1.Sweeps/FetchResults",
    "/moralsweep.v1.Workers/Lease",
    "/moralsweep.v1.Workers/Report",
    "/moralsweep.v1.Workers/ExtendLeases",
    "/moralsweep.v1.Workers/GetSweepDefinition",
    "/moralsweep.v1.Workers/AcquirePermits",
    "/moralsweep.v1.Workers/Throttled",
    "/moralsweep.v1.Workers/Usage",
    "/moralsweep.v1.Workers/OpenBatch",
    "/moralsweep.v1.Workers/BatchSubmitted",
    "/moralsweep.v1.Workers/ExtendBatches",
    "/moralsweep.v1.Workers/ClaimBatches",
    "/moralsweep.v1.Workers/CloseBatch",
    "/moralsweep.v1.Sweeps/NoSuchMethod",
];

struct Target {
    opts: ConnectOptions,
    port: u16,
}

impl Target {
    fn sweeps(&self) -> pb::sweeps_client::SweepsClient<Authed> {
        sweeps_client(&self.opts).unwrap()
    }
    fn workers(&self) -> pb::workers_client::WorkersClient<Authed> {
        workers_client(&self.opts).unwrap()
    }

    /// The process is up and answers.
    async fn healthy(&self) -> Result<(), TestCaseError> {
        self.sweeps()
            .list_sweeps(pb::ListSweepsRequest {})
            .await
            .map(|_| ())
            .map_err(|s| TestCaseError::fail(format!("health call failed: {s:?}")))
    }

    /// Every file of a sweep's results, by path.
    async fn files(&self, sweep: &str) -> BTreeMap<String, Vec<u8>> {
        let mut s = self
            .sweeps()
            .fetch_results(pb::FetchResultsRequest {
                sweep: sweep.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut out = BTreeMap::new();
        let mut cur = String::new();
        while let Some(c) = s.message().await.unwrap() {
            if !c.path.is_empty() {
                cur = c.path.clone();
            }
            out.entry(cur.clone())
                .or_insert_with(Vec::new)
                .extend_from_slice(&c.data);
        }
        out
    }

    /// Sends `body` as the whole HTTP/2 request body of `path` (framing
    /// included); returns the grpc-status, if the server gave one.
    async fn raw_h2(&self, path: &str, body: Vec<u8>) -> Result<Option<i32>, String> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| e.to_string())?;
        let (client, conn) = h2::client::handshake(tcp)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut client = client.ready().await.map_err(|e| e.to_string())?;
        let req = http::Request::post(format!("http://127.0.0.1:{}{path}", self.port))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(())
            .unwrap();
        let (resp, mut send) = client.send_request(req, false).map_err(|e| e.to_string())?;
        // The server may answer and end the stream before the body is sent
        // (it does for an unknown method); sending then fails with
        // "inactive stream", and the answer still counts.
        let _ = send.send_data(Bytes::from(body), true);
        let resp = tokio::time::timeout(Duration::from_secs(10), resp)
            .await
            .map_err(|_| "no answer in 10 s".to_string())?
            .map_err(|e| e.to_string())?;
        let status_of = |h: &http::HeaderMap| {
            h.get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
        };
        if let Some(s) = status_of(resp.headers()) {
            return Ok(Some(s));
        }
        let mut body = resp.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        let trailers = body.trailers().await.map_err(|e| e.to_string())?;
        Ok(trailers.as_ref().and_then(status_of))
    }
}

fn run<S: Strategy>(
    label: &str,
    rt: &tokio::runtime::Runtime,
    target: &Target,
    strategy: S,
    f: impl Fn(
        &Target,
        S::Value,
    )
        -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), TestCaseError>> + '_>>,
) {
    let n = cases();
    eprintln!("fuzzing {label}: {n} cases (PROPTEST_CASES overrides)");
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |v| {
        rt.block_on(async {
            f(target, v).await?;
            target.healthy().await
        })
    });
    if let Err(e) = result {
        panic!("{label}: {e}");
    }
}

#[test]
fn the_coordinator_survives_garbage_in_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let port = free_port();
    let _coord = spawn_coordinator(
        port,
        &redis.url(),
        &dir.path().join("data"),
        TOKEN,
        &["--lease-ttl", "30"],
        dir.path(),
    );
    let target = Target {
        opts: ConnectOptions {
            url: format!("http://127.0.0.1:{port}"),
            token: Some(TOKEN.into()),
            tls: None,
            timeout: Some(Duration::from_secs(20)),
        },
        port,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let personas: Vec<String> = (0..2).map(|i| format!("persona {i}")).collect();

    // A finished sweep, recorded by hand: the data garbage must not change.
    let before = rt.block_on(async {
        let mut s = target.sweeps();
        s.submit_sweep(pb::SubmitSweepRequest {
            spec_toml: spec_text("fz", &["m"], 2, 1, ""),
            spec_name: "fz.toml".into(),
            personas: personas.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut w = target.workers();
        loop {
            let r = w
                .lease(pb::LeaseRequest {
                    worker: "setup".into(),
                    max_slots: 100,
                })
                .await
                .unwrap()
                .into_inner();
            if r.leases.is_empty() {
                let st = s
                    .get_sweep(pb::GetSweepRequest { sweep: "fz".into() })
                    .await
                    .unwrap()
                    .into_inner();
                if st.done == st.total {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let mut results = Vec::new();
            for l in &r.leases {
                for &slot in &l.slots {
                    results.push(pb::SlotResult {
                        lease_id: l.lease_id.clone(),
                        sweep: l.sweep.clone(),
                        model: l.model.clone(),
                        mode: l.mode.clone(),
                        slot,
                        outcome: Some(pb::slot_result::Outcome::Sample(pb::SampleResult {
                            rating: (slot % 6) as i32,
                            failures: 0,
                            response: (slot % 6).to_string(),
                            collected_at: "2026-01-01T00:00:00.000000".into(),
                        })),
                    });
                }
            }
            w.report(pb::ReportRequest {
                worker: "setup".into(),
                results,
                release: r.leases.iter().map(|l| l.lease_id.clone()).collect(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        // Its files are written once it is done.
        loop {
            let st = s
                .get_sweep(pb::GetSweepRequest { sweep: "fz".into() })
                .await
                .unwrap()
                .into_inner();
            if st.state == "done" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A running sweep with token limits, for leases and pacing.
        s.submit_sweep(pb::SubmitSweepRequest {
            spec_toml: spec_text("live", &["m"], 2, 1, "tpm = 100000\nrpm = 600"),
            spec_name: "live.toml".into(),
            personas: personas.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        target.files("fz").await
    });
    assert!(
        before.contains_key("data/m_temp01.csv"),
        "{:?}",
        before.keys()
    );

    run(
        "SubmitSweep",
        &rt,
        &target,
        (
            spec_text_mutated(),
            any::<String>(),
            proptest::collection::vec(any::<String>(), 0..4),
        ),
        |t, (spec_toml, spec_name, personas)| {
            Box::pin(async move {
                let r = t
                    .sweeps()
                    .submit_sweep(pb::SubmitSweepRequest {
                        spec_toml,
                        spec_name,
                        personas,
                        ..Default::default()
                    })
                    .await;
                check("SubmitSweep", r, false)
            })
        },
    );
    run(
        "Lease",
        &rt,
        &target,
        (name(), number()),
        |t, (worker, max)| {
            Box::pin(async move {
                let r = t
                    .workers()
                    .lease(pb::LeaseRequest {
                        worker,
                        max_slots: max,
                    })
                    .await;
                check("Lease", r, false)
            })
        },
    );
    run(
        "Report",
        &rt,
        &target,
        (
            proptest::collection::vec(slot_result(), 0..6),
            proptest::collection::vec(name(), 0..3),
            name(),
            (proptest::collection::vec(model_usage(), 0..4), name()),
        ),
        |t, (results, release, worker, (usage, usage_source))| {
            Box::pin(async move {
                let r = t
                    .workers()
                    .report(pb::ReportRequest {
                        worker,
                        results,
                        release,
                        usage,
                        usage_source,
                    })
                    .await;
                check("Report", r, false)
            })
        },
    );
    run(
        "ExtendLeases",
        &rt,
        &target,
        proptest::collection::vec(name(), 0..8),
        |t, lease_ids| {
            Box::pin(async move {
                let r = t
                    .workers()
                    .extend_leases(pb::ExtendLeasesRequest { lease_ids })
                    .await;
                check("ExtendLeases", r, false)
            })
        },
    );
    run(
        "AcquirePermits",
        &rt,
        &target,
        (name(), number(), big()),
        |t, (rate_group, count, tokens_each)| {
            Box::pin(async move {
                let r = t
                    .workers()
                    .acquire_permits(pb::PermitsRequest {
                        rate_group,
                        count,
                        tokens_each,
                    })
                    .await;
                check("AcquirePermits", r, false)
            })
        },
    );
    run(
        "Throttled",
        &rt,
        &target,
        (name(), number()),
        |t, (rate_group, retry_after_ms)| {
            Box::pin(async move {
                let r = t
                    .workers()
                    .throttled(pb::ThrottledRequest {
                        rate_group,
                        retry_after_ms,
                    })
                    .await;
                check("Throttled", r, false)
            })
        },
    );
    run(
        "Usage",
        &rt,
        &target,
        (name(), big(), big()),
        |t, (rate_group, estimated_tokens, actual_tokens)| {
            Box::pin(async move {
                let r = t
                    .workers()
                    .usage(pb::UsageRequest {
                        rate_group,
                        estimated_tokens,
                        actual_tokens,
                    })
                    .await;
                check("Usage", r, false)
            })
        },
    );
    run("GetSweep", &rt, &target, name(), |t, sweep| {
        Box::pin(async move {
            let r = t.sweeps().get_sweep(pb::GetSweepRequest { sweep }).await;
            check("GetSweep", r, false)
        })
    });
    run("CancelSweep", &rt, &target, name(), |t, sweep| {
        Box::pin(async move {
            let r = t
                .sweeps()
                .cancel_sweep(pb::CancelSweepRequest { sweep })
                .await;
            check("CancelSweep", r, false)
        })
    });
    run("FetchResults", &rt, &target, name(), |t, sweep| {
        Box::pin(async move {
            match t
                .sweeps()
                .fetch_results(pb::FetchResultsRequest { sweep })
                .await
            {
                Ok(s) => {
                    let mut s = s.into_inner();
                    loop {
                        match s.message().await {
                            Ok(Some(_)) => {}
                            Ok(None) => return Ok(()),
                            Err(e) => return check::<()>("FetchResults stream", Err(e), false),
                        }
                    }
                }
                Err(e) => check::<()>("FetchResults", Err(e), false),
            }
        })
    });
    run(
        "arbitrary message bytes",
        &rt,
        &target,
        (
            0..METHODS.len(),
            proptest::collection::vec(any::<u8>(), 0..256),
        ),
        |t, (m, bytes)| {
            Box::pin(async move {
                let (ch, bearer) = channel(&t.opts).unwrap();
                let mut grpc = tonic::client::Grpc::new(
                    tonic::service::interceptor::InterceptedService::new(ch, bearer),
                );
                grpc.ready()
                    .await
                    .map_err(|e| TestCaseError::fail(format!("not ready: {e}")))?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(METHODS[m]);
                let r = grpc
                    .unary(tonic::Request::new(Bytes::from(bytes)), path, RawCodec)
                    .await;
                match r {
                    Err(s) if s.code() == Code::Unimplemented && m == METHODS.len() - 1 => Ok(()),
                    // Streaming methods answered as unary: the first message or none.
                    r => check(METHODS[m], r, true),
                }
            })
        },
    );
    run(
        "arbitrary HTTP/2 bodies",
        &rt,
        &target,
        (
            0..METHODS.len(),
            proptest::collection::vec(any::<u8>(), 0..64),
        ),
        |t, (m, body)| {
            Box::pin(async move {
                match t.raw_h2(METHODS[m], body).await {
                    Ok(Some(code)) => {
                        let s = Status::new(Code::from_i32(code), "");
                        if proper(&s, true)
                            || code == 0
                            || (code == Code::Unimplemented as i32 && m == METHODS.len() - 1)
                        {
                            Ok(())
                        } else {
                            Err(TestCaseError::fail(format!(
                                "{}: grpc-status {code}",
                                METHODS[m]
                            )))
                        }
                    }
                    Ok(None) => Err(TestCaseError::fail(format!(
                        "{}: no grpc-status",
                        METHODS[m]
                    ))),
                    Err(e) => Err(TestCaseError::fail(format!("{}: {e}", METHODS[m]))),
                }
            })
        },
    );

    // The finished sweep is untouched: same files, every slot, no message.
    rt.block_on(async {
        let st = target
            .sweeps()
            .get_sweep(pb::GetSweepRequest { sweep: "fz".into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(st.state, "done");
        assert_eq!(st.done, st.total);
        assert!(st.messages.is_empty(), "{:?}", st.messages);
        let after = target.files("fz").await;
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>()
        );
        for (k, v) in &before {
            if k.starts_with("data/") {
                assert_eq!(&after[k], v, "{k} changed");
            }
        }
    });
}
