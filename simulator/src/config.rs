//! How the simulator is set up: [`SimConfig`], the flags of `moralsweep
//! sim` (what to answer from, the keys and their limits, the faults, and
//! each cloud's and batch API's settings), apart from the engine that
//! decides with it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::faults::FaultPlan;
use crate::replay::ReplayMode;

/// How the simulator is set up (the flags of `moralsweep sim`).
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Directory of rating files to answer from (searched recursively).
    pub replay: Option<PathBuf>,
    /// The persona file the recorded ratings were collected with.
    pub personas: Option<PathBuf>,
    pub replay_mode: ReplayMode,
    /// Seeds the generator, the deal shuffles and the fault decisions.
    pub seed: u64,
    /// Requests per minute allowed to each key (`None`: no limit).
    pub rpm: Option<u64>,
    /// Tokens per minute allowed to each key (`None`: no limit).
    pub tpm: Option<u64>,
    /// Limits of particular keys, overriding `rpm`/`tpm`.
    pub key_limits: HashMap<String, (Option<u64>, Option<u64>)>,
    pub faults: FaultPlan,
    /// Delay of a `slow` fault.
    pub slow: Duration,
    /// How long a `timeout` fault keeps the client waiting before the
    /// connection is dropped.
    pub hang: Duration,
    /// Delay added to every answer (a provider's latency).
    pub latency: Duration,
    /// When set, requests must carry this key (else 401).
    pub api_key: Option<String>,
    /// With replay data, answer keys without recorded data from the
    /// generator instead of with 404.
    pub generate_unknown: bool,
    /// Inject faults only into one-token requests, so that the protocol's
    /// longer fallback request is answered normally.
    pub faults_one_token_only: bool,
    /// Model keys configured without multi-sample: a request asking them
    /// for more than one sample (`n`, `candidateCount`) gets the provider's
    /// 400 naming the parameter.
    pub single_sample: Vec<String>,
    /// How provider batches behave: completion delay, the shares of
    /// errored and expired lines.
    pub batch: crate::batch::BatchSettings,
    /// How the misalignment check's questions and judge prompts are
    /// answered.
    pub em: crate::em::EmSim,
    /// How AWS is played: the key pair, issued credentials' lifetime.
    pub aws: crate::bedrock::AwsSim,
    /// How Google Cloud is played (service accounts, token lifetime).
    pub gcp: crate::vertex::GcpSettings,
    /// How Azure OpenAI and Entra ID are played.
    pub azure: crate::azure::AzureSim,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            replay: None,
            personas: None,
            replay_mode: ReplayMode::Sample,
            seed: 0,
            rpm: None,
            tpm: None,
            key_limits: HashMap::new(),
            faults: FaultPlan::default(),
            slow: Duration::from_millis(300),
            hang: Duration::from_secs(30),
            latency: Duration::ZERO,
            api_key: None,
            generate_unknown: false,
            faults_one_token_only: false,
            single_sample: Vec::new(),
            batch: crate::batch::BatchSettings::default(),
            em: crate::em::EmSim::default(),
            aws: crate::bedrock::AwsSim::default(),
            gcp: crate::vertex::GcpSettings::default(),
            azure: crate::azure::AzureSim::default(),
        }
    }
}
