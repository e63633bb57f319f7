//! `moralsweep sim`: the provider simulator (see `moralsweep_simulator`).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use moralsweep_simulator::{parse_fault_list, BatchSettings, FaultPlan, ReplayMode, SimConfig};

#[derive(clap::Args)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: String,
    /// Directory of the papers' rating files to answer from (searched
    /// recursively). The spec's `model` field selects the file: a request
    /// for model `gpt-4o` (the `model` the API request names, as a spec's
    /// `[[model]]` entry sets it; not its `key`) answers from
    /// `gpt-4o_temp<TT>.csv` (persona prompts) and `gpt-4o_temp<TT>_self.csv`
    /// or `gpt-4o_self.csv` (self prompts), at the file whose temperature
    /// <TT>/10 is closest to the request's (a request without one, a
    /// `temperature = "provider-default"` model, counts as 1.0). A model
    /// with no file gets a 404 (see --generate-unknown).
    #[arg(long, verbatim_doc_comment)]
    pub replay: Option<PathBuf>,
    /// The persona file (JSON array) the recorded ratings were collected with.
    #[arg(long)]
    pub personas: Option<PathBuf>,
    /// `sample`: draw each answer with replacement from the cell's recorded
    /// ratings; `deal`: deal them without replacement, reshuffling when a
    /// cell's deck is empty.
    #[arg(long, default_value = "sample", value_parser = parse_mode)]
    pub replay_mode: ReplayMode,
    /// Seeds the generator, the deal shuffles and the fault decisions.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Requests per minute allowed to each model key (429 beyond).
    #[arg(long)]
    pub rpm: Option<u64>,
    /// Tokens per minute allowed to each model key (429 beyond).
    #[arg(long)]
    pub tpm: Option<u64>,
    /// Limits of one key, overriding --rpm/--tpm: KEY=RPM or KEY=RPM:TPM
    /// (repeatable; an empty RPM means no request limit).
    #[arg(long = "limit", value_name = "KEY=RPM[:TPM]")]
    pub limits: Vec<String>,
    /// Fraction of requests that get an injected fault (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub fault_rate: f64,
    /// Fault kinds, equally likely: `all` or a list of 500, 503, slow,
    /// timeout, drop, malformed, nondigit, empty, 429.
    #[arg(long, default_value = "all")]
    pub faults: String,
    /// Delay of a `slow` answer, in milliseconds (keep it below the clients' timeout).
    #[arg(long, default_value_t = 300)]
    pub slow_ms: u64,
    /// How long a `timeout` fault holds a request before dropping it, in
    /// milliseconds (make it longer than the clients' timeout).
    #[arg(long, default_value_t = 30_000)]
    pub hang_ms: u64,
    /// Latency added to every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Require this environment variable's value as the API key (401 otherwise).
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// With --replay, answer model keys that have no recorded data from the
    /// seeded generator instead of with 404.
    #[arg(long)]
    pub generate_unknown: bool,
    /// Inject faults only into one-token requests (the protocol's longer
    /// fallback request is then answered normally).
    #[arg(long)]
    pub fault_one_token_only: bool,
    /// A model key served without multi-sample: a request for more than
    /// one sample (`n`, `candidateCount`) gets the provider's 400 naming
    /// the parameter. Repeat for several keys.
    #[arg(long, value_name = "KEY")]
    pub single_sample: Vec<String>,
    /// How long a provider batch takes, in milliseconds: its lines are
    /// answered in order, spread evenly over this time (0: all at the
    /// first look).
    #[arg(long, default_value_t = 0)]
    pub batch_delay_ms: u64,
    /// Milliseconds between accepting a batch (it is counted as created)
    /// and answering its creation request.
    #[arg(long, default_value_t = 0)]
    pub batch_answer_delay_ms: u64,
    /// Share of batch lines (0 to 1) that end errored with the provider's 500.
    #[arg(long, default_value_t = 0.0)]
    pub batch_errored: f64,
    /// Share of batch lines (0 to 1) that expire unanswered.
    #[arg(long, default_value_t = 0.0)]
    pub batch_expired: f64,
    /// How the misalignment check is played (a JSON file: answer pools per
    /// model key, the judge's reply distributions; see
    /// `moralsweep_simulator::em`). Without it, answers come from a
    /// built-in pool and the judge scores uniformly 0-100.
    #[arg(long, value_name = "FILE")]
    pub em: Option<std::path::PathBuf>,
    /// Amazon Bedrock: the AWS key pair (ACCESS_KEY_ID:SECRET_ACCESS_KEY)
    /// whose SigV4 signatures the Bedrock routes accept, besides the
    /// temporary credentials the simulator issues itself (its STS
    /// AssumeRoleWithWebIdentity route `POST /` and container credentials
    /// route `GET /_aws/container-credentials`).
    #[arg(long, value_name = "ID:SECRET")]
    pub aws_key: Option<moralsweep_simulator::bedrock::AwsKey>,
    /// Lifetime in seconds of the temporary AWS credentials the simulator
    /// issues; requests signed with them afterwards get ExpiredTokenException.
    #[arg(long, default_value_t = 3600)]
    pub aws_token_lifetime_secs: u64,
    /// A Bedrock model id the AWS identity may not invoke
    /// (AccessDeniedException); repeat for several.
    #[arg(long, value_name = "MODEL")]
    pub aws_deny: Vec<String>,
    /// Google Cloud: a service-account key file (or an `authorized_user`
    /// file) whose RS256-signed assertions (refresh tokens) the token route
    /// `POST /token` exchanges for bearers; the Vertex AI routes accept only
    /// bearers it issued. Repeatable. Point the file's `token_uri` at
    /// `http://<this address>/token`.
    #[arg(long, value_name = "FILE")]
    pub gcp_service_account: Vec<PathBuf>,
    /// Lifetime of the bearers the Google token routes issue, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub gcp_token_lifetime_secs: u64,
    /// The one Google Cloud project the credentials may use: Vertex AI
    /// requests for another get 403 PERMISSION_DENIED
    /// (`aiplatform.endpoints.predict`). Default: any project.
    #[arg(long, value_name = "PROJECT")]
    pub gcp_project: Option<String>,
    /// Azure: the Entra ID tenant whose token route
    /// (`POST /{tenant}/oauth2/v2.0/token`) issues tokens (any when unset).
    #[arg(long, value_name = "TENANT")]
    pub azure_tenant: Option<String>,
    /// Azure: the client id (app registration or managed identity) tokens
    /// are issued to (any when unset; set, a request without a key or
    /// token gets 401).
    #[arg(long, value_name = "ID")]
    pub azure_client_id: Option<String>,
    /// Azure: the environment variable holding the client secret the token
    /// route accepts (any secret when unset).
    #[arg(long, value_name = "VAR")]
    pub azure_client_secret_env: Option<String>,
    /// Azure: how long an issued bearer token lasts, in seconds.
    #[arg(long, default_value_t = 3600.0)]
    pub azure_token_lifetime_secs: f64,
    /// Azure: a client id whose tokens lack the role to call deployments
    /// (403 PermissionDenied). Repeat for several.
    #[arg(long, value_name = "ID")]
    pub azure_no_role: Vec<String>,
}

fn parse_mode(s: &str) -> Result<ReplayMode, String> {
    s.parse()
}

/// A key's requests-per-minute and tokens-per-minute limits.
type KeyLimit = (Option<u64>, Option<u64>);

fn parse_limit(s: &str) -> anyhow::Result<(String, KeyLimit)> {
    let (key, spec) = s
        .split_once('=')
        .with_context(|| format!("--limit {s:?}: expected KEY=RPM or KEY=RPM:TPM"))?;
    let (rpm, tpm) = spec.split_once(':').unwrap_or((spec, ""));
    let num = |x: &str, what: &str| -> anyhow::Result<Option<u64>> {
        if x.is_empty() {
            return Ok(None);
        }
        x.parse::<u64>()
            .map(Some)
            .with_context(|| format!("--limit {s:?}: {what} {x:?} is not a whole number"))
    };
    Ok((key.to_string(), (num(rpm, "RPM")?, num(tpm, "TPM")?)))
}

pub fn sim(args: SimArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.fault_rate) {
        anyhow::bail!(
            "--fault-rate {} is outside [0, 1]; give the fraction of requests to fault, e.g. 0.2",
            args.fault_rate
        );
    }
    for (flag, share) in [
        ("--batch-errored", args.batch_errored),
        ("--batch-expired", args.batch_expired),
    ] {
        if !(0.0..=1.0).contains(&share) {
            anyhow::bail!(
                "{flag} {share} is outside [0, 1]; give the share of batch lines, e.g. 0.05"
            );
        }
    }
    if args.batch_errored + args.batch_expired > 1.0 {
        anyhow::bail!(
            "--batch-errored {} and --batch-expired {} add up to more than 1; together they are a share of the batch lines",
            args.batch_errored,
            args.batch_expired
        );
    }
    let kinds = parse_fault_list(&args.faults).map_err(|e| anyhow::anyhow!("--faults: {e}"))?;
    let api_key = match &args.api_key_env {
        Some(var) => Some(std::env::var(var).with_context(|| {
            format!("--api-key-env names {var}, which is not set in the environment")
        })?),
        None => None,
    };
    if !(args.azure_token_lifetime_secs.is_finite() && args.azure_token_lifetime_secs > 0.0) {
        anyhow::bail!(
            "--azure-token-lifetime-secs {} must be a positive number of seconds, e.g. 3600",
            args.azure_token_lifetime_secs
        );
    }
    let azure_client_secret = match &args.azure_client_secret_env {
        Some(var) => Some(std::env::var(var).with_context(|| {
            format!("--azure-client-secret-env names {var}, which is not set in the environment")
        })?),
        None => None,
    };
    let key_limits: HashMap<_, _> = args
        .limits
        .iter()
        .map(|l| parse_limit(l))
        .collect::<anyhow::Result<_>>()?;
    let mut gcp = moralsweep_simulator::vertex::GcpSettings {
        token_lifetime: Duration::from_secs(args.gcp_token_lifetime_secs),
        project: args.gcp_project.clone(),
        ..Default::default()
    };
    for file in &args.gcp_service_account {
        gcp.add_file(file).map_err(anyhow::Error::msg)?;
    }
    let config = SimConfig {
        gcp,
        replay: args.replay,
        personas: args.personas,
        replay_mode: args.replay_mode,
        seed: args.seed,
        rpm: args.rpm,
        tpm: args.tpm,
        key_limits,
        faults: FaultPlan {
            rate: args.fault_rate,
            kinds,
        },
        slow: Duration::from_millis(args.slow_ms),
        hang: Duration::from_millis(args.hang_ms),
        latency: Duration::from_millis(args.latency_ms),
        api_key,
        generate_unknown: args.generate_unknown,
        faults_one_token_only: args.fault_one_token_only,
        single_sample: args.single_sample.clone(),
        batch: BatchSettings {
            delay: Duration::from_millis(args.batch_delay_ms),
            answer_delay: Duration::from_millis(args.batch_answer_delay_ms),
            errored: args.batch_errored,
            expired: args.batch_expired,
        },
        em: match &args.em {
            Some(path) => moralsweep_simulator::em::EmSim::load(path)?,
            None => Default::default(),
        },
        aws: moralsweep_simulator::bedrock::AwsSim::new(
            args.aws_key.clone(),
            Duration::from_secs(args.aws_token_lifetime_secs.max(1)),
            args.aws_deny.clone(),
        ),
        azure: moralsweep_simulator::azure::AzureSim {
            tenant: args.azure_tenant.clone(),
            client_id: args.azure_client_id.clone(),
            client_secret: azure_client_secret,
            token_lifetime: Duration::from_secs_f64(args.azure_token_lifetime_secs),
            no_role: args.azure_no_role.clone(),
        },
    };
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let running = moralsweep_simulator::spawn(config, &args.listen).await?;
        // Listening for signals before saying it is ready.
        let stop = super::shutdown_listener();
        let keys = running.sim.replay_keys();
        // Errors are ignored: whoever started us may have stopped reading.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "moralsweep sim listening on http://{}", running.addr);
        if !keys.is_empty() {
            let _ = writeln!(
                out,
                "replaying {} model keys: {}",
                keys.len(),
                keys.join(", ")
            );
        }
        std::io::stdout().flush().ok();
        // Ctrl-C or SIGTERM (a container runtime's stop) ends it at once:
        // it holds nothing that needs flushing.
        tokio::select! {
            r = running.task => r.context("the simulator task failed")?,
            _ = stop => {}
        }
        Ok(())
    })
}
