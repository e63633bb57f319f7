//! The providers' batch APIs: OpenAI's Batch API over uploaded JSONL files
//! ([`openai`]), Anthropic's Message Batches ([`anthropic`]) and Gemini's
//! batch mode with inline requests ([`gemini`]). What they share lives
//! here: a batch is a list of lines, each answered by the same engine as an
//! interactive request ([`Sim::decide_batch_line`]: replay, deal, faults,
//! `n`), so deal mode through batches hands out each recorded answer
//! exactly once.
//!
//! A batch advances when a client looks at it (retrieve, list, results):
//! its lines are answered in order, spread evenly over the configured
//! completion delay ([`BatchSettings::delay`]; zero answers them all at the
//! first look). Every line is answered at most once, under the store's
//! lock. The life cycle, in the simulator's own terms:
//!
//! `Validating` (OpenAI's validation, Gemini's pending) -> `InProgress`
//! (lines being answered) -> `Finalizing` (all answered; shown for one look)
//! -> `Completed`, or `Expired` when some lines expired; `Failed` when the
//! input was invalid; `Cancelling` -> `Cancelled` (lines not yet answered
//! are cancelled). Each API names these states its own way.
//!
//! Partial failure is configurable: a share of lines ends errored (a 500
//! from the provider) and a share expires unanswered; which lines is decided
//! before the engine is asked, so such a line consumes no recorded answer.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::engine::{Answer, Outcome, Sim};
use crate::faults::Fault;
use crate::wire::{Api, ErrKind};
use moralsweep_common::hash::fnv1a_parts;

pub mod anthropic;
pub mod gemini;
pub mod gemini_files;
pub mod multipart;
pub mod openai;
pub mod store;

/// Waits [`BatchSettings::answer_delay`] before a creation is answered.
pub(crate) async fn answer_delay(sim: &Sim) {
    let d = sim.config.batch.answer_delay;
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

/// How batches behave (the `--batch-*` flags of `moralsweep sim`).
#[derive(Debug, Clone, Default)]
pub struct BatchSettings {
    /// From a batch's creation until its last line is answered; the lines
    /// are answered in order, spread evenly over it.
    pub delay: Duration,
    /// Share of lines (0 to 1) that end errored: the provider's 500.
    pub errored: f64,
    /// How long the answer to a batch's creation takes once the batch is
    /// accepted (and counted): a client that dies meanwhile never learns
    /// the batch's id, the window a lookup by its name must cover.
    pub answer_delay: Duration,
    /// Share of lines (0 to 1) that expire unanswered.
    pub expired: f64,
}

/// What became of one line.
#[derive(Debug, Clone)]
pub enum Done {
    /// Answered: the body the interactive endpoint would have returned.
    Answered {
        body: Value,
        input_tokens: u64,
        output_tokens: u64,
    },
    /// Refused or failed: the HTTP status and the API's error body.
    Errored { status: u16, body: Value },
    /// Not answered before the batch's window closed.
    Expired,
    /// Not answered because the batch was cancelled.
    Canceled,
}

/// One request of a batch, ready to be answered.
pub trait Job: Send {
    /// Answers it (once).
    fn run(&self, sim: &Sim) -> Done;
}

/// A batch's requests before they become lines: custom id and job each.
pub type Jobs = Vec<(String, Box<dyn Job>)>;

/// A line whose request the API refused on its own (Anthropic and Gemini
/// validate each request when they answer it): it ends errored with that
/// refusal.
pub struct Refused {
    pub status: u16,
    pub body: Value,
}

impl Job for Refused {
    fn run(&self, _sim: &Sim) -> Done {
        Done::Errored {
            status: self.status,
            body: self.body.clone(),
        }
    }
}

/// What the simulator decided for a line when the batch was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Run,
    Error,
    Expire,
}

/// One line of a batch.
pub struct Line {
    pub custom_id: String,
    job: Box<dyn Job>,
    fate: Fate,
    /// Its result, once answered (or expired, or cancelled).
    pub done: Option<Done>,
}

/// Where a batch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Validating,
    InProgress,
    Finalizing,
    Cancelling,
    Failed,
    Completed,
    Expired,
    Cancelled,
}

impl Phase {
    /// Whether the batch is over (nothing more will be answered).
    pub fn ended(self) -> bool {
        matches!(
            self,
            Phase::Failed | Phase::Completed | Phase::Expired | Phase::Cancelled
        )
    }
}

/// An input problem that fails a whole batch (OpenAI's validation).
#[derive(Debug, Clone)]
pub struct InputError {
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    /// The input file's line (1-based), when one line is at fault.
    pub line: Option<usize>,
}

/// When a batch passed each point of its life.
#[derive(Debug, Clone, Default)]
pub struct Stamps {
    pub in_progress: Option<DateTime<Utc>>,
    pub finalizing: Option<DateTime<Utc>>,
    pub cancelling: Option<DateTime<Utc>>,
    /// Completed, failed, expired or cancelled.
    pub ended: Option<DateTime<Utc>>,
}

/// Line counts by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: u64,
    pub succeeded: u64,
    pub errored: u64,
    pub expired: u64,
    pub canceled: u64,
    /// Not answered yet.
    pub pending: u64,
}

/// One provider batch.
pub struct Batch {
    pub id: String,
    pub api: Api,
    /// The model the batch's lines name (the first line's, for APIs that
    /// allow several).
    pub model: String,
    pub created_at: DateTime<Utc>,
    /// Simulator uptime at creation (the clock of the completion delay).
    created: Duration,
    delay: Duration,
    pub lines: Vec<Line>,
    /// Lines answered so far: a prefix of `lines`.
    answered: usize,
    pub phase: Phase,
    pub stamps: Stamps,
    /// Why the batch failed validation (OpenAI).
    pub errors: Vec<InputError>,
    /// API-specific attributes the batch was created with (OpenAI's
    /// `input_file_id`, `endpoint`, `metadata`; Gemini's `displayName`).
    pub attrs: serde_json::Map<String, Value>,
    /// The output and error files written when it ended (OpenAI).
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    /// Whether the results were written out (OpenAI's files), once.
    pub results_written: bool,
}

impl Batch {
    /// A new batch of `lines` (custom id and job each). The fate of each
    /// line (answered, errored, expired) is decided now, from the
    /// simulator's seed, the batch's id and the line's place.
    pub fn new(sim: &Sim, api: Api, id: String, model: String, lines: Jobs, phase: Phase) -> Batch {
        let settings = &sim.config.batch;
        let lines = lines
            .into_iter()
            .enumerate()
            .map(|(i, (custom_id, job))| {
                let h = fnv1a_parts(&[
                    &sim.config.seed.to_le_bytes(),
                    id.as_bytes(),
                    &(i as u64).to_le_bytes(),
                ]);
                let u = (h >> 11) as f64 / (1u64 << 53) as f64;
                let fate = if u < settings.errored {
                    Fate::Error
                } else if u < settings.errored + settings.expired {
                    Fate::Expire
                } else {
                    Fate::Run
                };
                Line {
                    custom_id,
                    job,
                    fate,
                    done: None,
                }
            })
            .collect();
        Batch {
            id,
            api,
            model,
            created_at: Utc::now(),
            created: sim.uptime(),
            delay: settings.delay,
            lines,
            answered: 0,
            phase,
            stamps: Stamps {
                in_progress: (phase == Phase::InProgress).then(Utc::now),
                ..Stamps::default()
            },
            errors: Vec::new(),
            attrs: serde_json::Map::new(),
            output_file_id: None,
            error_file_id: None,
            results_written: false,
        }
    }

    /// Brings the batch up to date: one step of its life per look, and the
    /// lines due by now answered.
    pub fn advance(&mut self, sim: &Sim) {
        let now = Utc::now();
        match self.phase {
            Phase::Validating => {
                if self.errors.is_empty() {
                    self.phase = Phase::InProgress;
                    self.stamps.in_progress = Some(now);
                    self.answer_due(sim);
                } else {
                    self.phase = Phase::Failed;
                    self.stamps.ended = Some(now);
                }
            }
            Phase::InProgress => self.answer_due(sim),
            Phase::Finalizing => {
                let expired = self
                    .lines
                    .iter()
                    .any(|l| matches!(l.done, Some(Done::Expired)));
                self.phase = if expired {
                    Phase::Expired
                } else {
                    Phase::Completed
                };
                self.stamps.ended = Some(now);
            }
            Phase::Cancelling => {
                for line in &mut self.lines[self.answered..] {
                    line.done = Some(Done::Canceled);
                }
                self.answered = self.lines.len();
                self.phase = Phase::Cancelled;
                self.stamps.ended = Some(now);
            }
            Phase::Failed | Phase::Completed | Phase::Expired | Phase::Cancelled => {}
        }
    }

    /// Answers the lines due by now; when all are, the batch finalizes.
    fn answer_due(&mut self, sim: &Sim) {
        let n = self.lines.len();
        let elapsed = sim.uptime().saturating_sub(self.created);
        let due = if self.delay.is_zero() || elapsed >= self.delay {
            n
        } else {
            ((n as u128 * elapsed.as_nanos()) / self.delay.as_nanos()) as usize
        };
        while self.answered < due.min(n) {
            let line = &mut self.lines[self.answered];
            let done = match line.fate {
                Fate::Expire => Done::Expired,
                Fate::Error => Done::Errored {
                    status: 500,
                    body: self.api.error_body(
                        ErrKind::Internal,
                        "The server had an error while processing this request (the simulator fails a share of batch lines: --batch-errored).",
                        None,
                        sim,
                    ),
                },
                Fate::Run => line.job.run(sim),
            };
            if let Done::Answered { output_tokens, .. } = &done {
                sim.batch_output(&self.model, *output_tokens);
            }
            line.done = Some(done);
            self.answered += 1;
        }
        if self.answered == n {
            self.phase = Phase::Finalizing;
            self.stamps.finalizing = Some(Utc::now());
        }
    }

    /// Asks the batch to stop: lines not yet answered will be cancelled.
    /// Refused (with the reason) when the batch is over already.
    pub fn cancel(&mut self) -> Result<(), String> {
        match self.phase {
            Phase::Validating | Phase::InProgress | Phase::Finalizing => {
                self.phase = Phase::Cancelling;
                self.stamps.cancelling = Some(Utc::now());
                Ok(())
            }
            Phase::Cancelling => Ok(()),
            Phase::Failed | Phase::Completed | Phase::Expired | Phase::Cancelled => Err(format!(
                "Cannot cancel batch {} : it has already ended ({:?}).",
                self.id, self.phase
            )),
        }
    }

    /// The lines by outcome.
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            total: self.lines.len() as u64,
            ..Counts::default()
        };
        for l in &self.lines {
            match &l.done {
                None => c.pending += 1,
                Some(Done::Answered { .. }) => c.succeeded += 1,
                Some(Done::Errored { .. }) => c.errored += 1,
                Some(Done::Expired) => c.expired += 1,
                Some(Done::Canceled) => c.canceled += 1,
            }
        }
        c
    }

    /// Input and output tokens of the answered lines.
    pub fn usage(&self) -> (u64, u64) {
        self.lines.iter().fold((0, 0), |(i, o), l| match &l.done {
            Some(Done::Answered {
                input_tokens,
                output_tokens,
                ..
            }) => (i + input_tokens, o + output_tokens),
            _ => (i, o),
        })
    }
}

/// The status code a fault would have answered an interactive request with.
fn fault_status(api: Api, f: Fault) -> (u16, ErrKind) {
    match f {
        Fault::RateLimit => (429, ErrKind::RateLimited),
        Fault::Unavailable => (
            api.status(ErrKind::Overloaded).as_u16(),
            ErrKind::Overloaded,
        ),
        _ => (500, ErrKind::Internal),
    }
}

/// A line's result from the engine's outcome, `render` making the
/// interactive endpoint's success body.
pub fn settle(
    sim: &Sim,
    api: Api,
    key: &str,
    outcome: Outcome,
    render: impl FnOnce(&Answer) -> Value,
) -> Done {
    match outcome {
        Outcome::Answer { answer, .. } => Done::Answered {
            body: render(&answer),
            input_tokens: answer.input_tokens,
            output_tokens: answer.total_output_tokens(),
        },
        Outcome::Fault { fault, .. } => {
            let (status, kind) = fault_status(api, fault);
            Done::Errored {
                status,
                body: api.error_body(
                    kind,
                    &format!("The server had an error while processing this request (injected fault {}).", fault.name()),
                    None,
                    sim,
                ),
            }
        }
        Outcome::Refused(_) => Done::Errored {
            status: 429,
            body: api.error_body(ErrKind::RateLimited, "Rate limit reached.", None, sim),
        },
        Outcome::UnknownModel => Done::Errored {
            status: 404,
            body: api.error_body(
                ErrKind::NotFound,
                &format!("The model `{key}` does not exist or you do not have access to it."),
                Some("model"),
                sim,
            ),
        },
    }
}

/// An RFC 3339 time as Anthropic and Google write them.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::SimConfig;

    struct Fixed;
    impl Job for Fixed {
        fn run(&self, _sim: &Sim) -> Done {
            Done::Answered {
                body: serde_json::json!({"ok": true}),
                input_tokens: 3,
                output_tokens: 1,
            }
        }
    }

    fn lines(n: usize) -> Vec<(String, Box<dyn Job>)> {
        (0..n)
            .map(|i| (format!("c{i}"), Box::new(Fixed) as Box<dyn Job>))
            .collect()
    }

    #[test]
    fn a_batch_walks_its_life_one_step_per_look() {
        let sim = Sim::new(SimConfig::default()).unwrap();
        let mut b = Batch::new(
            &sim,
            Api::OpenAi,
            "b1".into(),
            "m".into(),
            lines(4),
            Phase::Validating,
        );
        assert_eq!(b.counts().pending, 4);
        b.advance(&sim);
        assert_eq!(b.phase, Phase::Finalizing);
        assert_eq!(b.counts().succeeded, 4);
        b.advance(&sim);
        assert_eq!(b.phase, Phase::Completed);
        assert_eq!(b.usage(), (12, 4));
        assert!(b.cancel().is_err());
    }

    #[test]
    fn cancelling_before_the_delay_cancels_the_unanswered_lines() {
        let sim = Sim::new(SimConfig {
            batch: BatchSettings {
                delay: Duration::from_secs(3600),
                ..BatchSettings::default()
            },
            ..SimConfig::default()
        })
        .unwrap();
        let mut b = Batch::new(
            &sim,
            Api::Anthropic,
            "b2".into(),
            "m".into(),
            lines(5),
            Phase::InProgress,
        );
        b.advance(&sim);
        assert_eq!(b.phase, Phase::InProgress);
        b.cancel().unwrap();
        assert_eq!(b.phase, Phase::Cancelling);
        b.advance(&sim);
        assert_eq!(b.phase, Phase::Cancelled);
        assert_eq!(b.counts().canceled, 5);
    }

    #[test]
    fn shares_of_errored_and_expired_lines() {
        let sim = Sim::new(SimConfig {
            batch: BatchSettings {
                errored: 0.2,
                expired: 0.1,
                ..BatchSettings::default()
            },
            ..SimConfig::default()
        })
        .unwrap();
        let mut b = Batch::new(
            &sim,
            Api::OpenAi,
            "b3".into(),
            "m".into(),
            lines(2000),
            Phase::InProgress,
        );
        b.advance(&sim);
        b.advance(&sim);
        assert_eq!(b.phase, Phase::Expired);
        let c = b.counts();
        assert_eq!(c.succeeded + c.errored + c.expired, 2000);
        assert!((300..500).contains(&c.errored), "{c:?}");
        assert!((120..280).contains(&c.expired), "{c:?}");
    }
}
