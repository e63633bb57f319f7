//! The rating protocol of METHOD.md, per slot:
//!
//! 1. ask for exactly one output token; a token that trims to `0`-`5` is the rating;
//! 2. otherwise count a failure and ask again, up to `max_attempts` in all;
//! 3. then ask once more with a longer allowance and take the first standalone 0-5;
//! 4. if that fails too, the rating is -1 and the failure count is kept.
//!
//! Transient provider errors (429, 5xx, timeouts) are not failures of the
//! model: the [`Provider`] passed in is expected to retry them (see the
//! worker's paced provider); an error that reaches this module stops the slot.

use moralsweep_common::extract::{one_token_rating, response_head};
use moralsweep_common::logspace::log_add;
use moralsweep_common::slot::{now_timestamp, LogprobRecord, SampleRecord};
use moralsweep_common::Instrument;

use crate::providers::{CompletionRequest, Provider, ProviderError};

/// How one slot is asked.
#[derive(Debug, Clone)]
pub struct SlotRequest {
    pub prompt: String,
    /// `None`: the provider's default (no temperature sent).
    pub temperature: Option<f64>,
    /// One-token attempts before the fallback (METHOD.md: 10).
    pub max_attempts: u32,
    /// Output allowance of the fallback request.
    pub fallback_max_tokens: u32,
    /// Seed of the slot; attempt `a` (0-based) sends `seed + a`, so an
    /// answer is determined by the slot and the attempt.
    pub seed: Option<u64>,
}

/// Default output allowance of the longer fallback request.
pub const DEFAULT_FALLBACK_MAX_TOKENS: u32 = 64;

fn attempt_seed(seed: Option<u64>, attempt: u32) -> Option<u64> {
    seed.map(|s| s.wrapping_add(attempt as u64))
}

/// Runs the sampling protocol for one persona or self slot of the MFQ-30.
pub async fn rate_sample(
    provider: &dyn Provider,
    req: &SlotRequest,
) -> Result<SampleRecord, ProviderError> {
    rate_sample_in(&Instrument::mfq30(), provider, req).await
}

/// Runs the sampling protocol for one slot of `instrument`: its parser and
/// scale decide what a rating is (for the BFI-44 a `0` is a failed attempt).
pub async fn rate_sample_in(
    instrument: &Instrument,
    provider: &dyn Provider,
    req: &SlotRequest,
) -> Result<SampleRecord, ProviderError> {
    let mut failures = 0u32;
    let mut last_text = String::new();
    for attempt in 0..req.max_attempts {
        let c = provider
            .complete(&CompletionRequest {
                prompt: req.prompt.clone(),
                max_tokens: 1,
                temperature: req.temperature,
                seed: attempt_seed(req.seed, attempt),
                top_logprobs: None,
            })
            .await?;
        if let Some(r) = one_token_record(instrument, &c.text, failures) {
            return Ok(r);
        }
        failures += 1;
        last_text = c.text;
    }
    let c = provider
        .complete(&CompletionRequest {
            prompt: req.prompt.clone(),
            max_tokens: req.fallback_max_tokens,
            temperature: req.temperature,
            seed: attempt_seed(req.seed, req.max_attempts),
            top_logprobs: None,
        })
        .await?;
    Ok(fallback_record(instrument, c.text, failures, last_text))
}

/// How the slots of one cell are asked together (several samples per
/// request).
#[derive(Debug, Clone)]
pub struct CellRequest {
    /// The prompt, temperature, attempts and fallback allowance of every
    /// slot (its `seed` is unused: each slot has its own in `seeds`).
    pub slot: SlotRequest,
    /// Each slot's seed, in slot order.
    pub seeds: Vec<u64>,
    /// The most samples one request may carry.
    pub max_samples: u32,
}

/// What [`rate_samples`] found: one record per slot, in slot order, and
/// whether the provider refused several samples per request (the caller
/// then asks that model one sample per request from now on).
#[derive(Debug)]
pub struct CellOutcome {
    pub records: Vec<SampleRecord>,
    pub refused_multi_sample: bool,
}

/// Step 1 of the protocol for one sample: its record when the text is a
/// rating (after `failures` failed attempts), `None` when it must be asked
/// again.
pub fn one_token_record(
    instrument: &Instrument,
    text: &str,
    failures: u32,
) -> Option<SampleRecord> {
    instrument
        .one_token_rating(text)
        .map(|rating| SampleRecord {
            rating,
            failures,
            response: response_head(text),
            collected_at: now_timestamp(),
        })
}

/// Steps 3 and 4 for one sample: the first standalone rating of the
/// fallback's text, else -1 with that text (or, when it is empty, the
/// `earlier` attempt's).
pub fn fallback_record(
    instrument: &Instrument,
    text: String,
    failures: u32,
    earlier: String,
) -> SampleRecord {
    let (rating, text) = match instrument.standalone_rating(&text) {
        Some(r) => (r, text),
        None => (-1, if text.is_empty() { earlier } else { text }),
    };
    SampleRecord {
        rating,
        failures,
        response: response_head(&text),
        collected_at: now_timestamp(),
    }
}

/// Runs the sampling protocol for several slots of one cell, drawing their
/// samples from shared requests (`n` samples each, at most
/// `max_samples`). The protocol holds per slot: choice j of an attempt
/// answers the j-th slot still missing a rating; a choice without a digit
/// counts a failure of that slot, and the slots still missing are asked
/// again with `n` = their number, up to `max_attempts` attempts, then the
/// longer fallback. An attempt's request sends the seed of the first slot
/// it asks for plus the attempt number, as one slot alone would. A
/// provider that refuses `n` > 1 finishes the cell one slot at a time
/// ([`rate_sample`]) and says so in the outcome.
pub async fn rate_samples(
    instrument: &Instrument,
    provider: &dyn Provider,
    req: &CellRequest,
) -> Result<CellOutcome, ProviderError> {
    let count = req.seeds.len();
    let mut records: Vec<Option<SampleRecord>> = vec![None; count];
    let mut failures = vec![0u32; count];
    let mut last_text = vec![String::new(); count];
    let cap = req.max_samples.max(1) as usize;
    let single = |records: Vec<Option<SampleRecord>>, failures: Vec<u32>| async move {
        // One slot at a time, each from where it stands.
        let mut out = Vec::with_capacity(count);
        for (i, r) in records.into_iter().enumerate() {
            match r {
                Some(r) => out.push(r),
                None => {
                    let mut one = req.slot.clone();
                    one.seed = Some(req.seeds[i].wrapping_add(failures[i] as u64));
                    one.max_attempts = req.slot.max_attempts.saturating_sub(failures[i]).max(1);
                    let mut r = rate_sample_in(instrument, provider, &one).await?;
                    r.failures += failures[i];
                    out.push(r);
                }
            }
        }
        Ok::<_, ProviderError>(out)
    };
    for attempt in 0..req.slot.max_attempts {
        let missing: Vec<usize> = (0..count).filter(|i| records[*i].is_none()).collect();
        if missing.is_empty() {
            break;
        }
        for chunk in missing.chunks(cap) {
            let n = chunk.len() as u32;
            let answers = match provider
                .complete_n(
                    &CompletionRequest {
                        prompt: req.slot.prompt.clone(),
                        max_tokens: 1,
                        temperature: req.slot.temperature,
                        seed: attempt_seed(Some(req.seeds[chunk[0]]), attempt),
                        top_logprobs: None,
                    },
                    n,
                )
                .await
            {
                Ok(a) => a,
                Err(e) if n > 1 && crate::providers::refuses_multi_sample(&e) => {
                    return Ok(CellOutcome {
                        records: single(records, failures).await?,
                        refused_multi_sample: true,
                    });
                }
                Err(e) => return Err(e),
            };
            for (slot, c) in chunk.iter().zip(answers) {
                match one_token_record(instrument, &c.text, failures[*slot]) {
                    Some(r) => records[*slot] = Some(r),
                    None => {
                        failures[*slot] += 1;
                        last_text[*slot] = c.text;
                    }
                }
            }
        }
    }
    // The longer fallback, one request for the slots still missing.
    let missing: Vec<usize> = (0..count).filter(|i| records[*i].is_none()).collect();
    for chunk in missing.chunks(cap) {
        let n = chunk.len() as u32;
        let answers = match provider
            .complete_n(
                &CompletionRequest {
                    prompt: req.slot.prompt.clone(),
                    max_tokens: req.slot.fallback_max_tokens,
                    temperature: req.slot.temperature,
                    seed: attempt_seed(Some(req.seeds[chunk[0]]), req.slot.max_attempts),
                    top_logprobs: None,
                },
                n,
            )
            .await
        {
            Ok(a) => a,
            Err(e) if n > 1 && crate::providers::refuses_multi_sample(&e) => {
                return Ok(CellOutcome {
                    records: single(records, failures).await?,
                    refused_multi_sample: true,
                });
            }
            Err(e) => return Err(e),
        };
        for (slot, c) in chunk.iter().zip(answers) {
            records[*slot] = Some(fallback_record(
                instrument,
                c.text,
                failures[*slot],
                std::mem::take(&mut last_text[*slot]),
            ));
        }
    }
    let records: Option<Vec<SampleRecord>> = records.into_iter().collect();
    records
        .map(|records| CellOutcome {
            records,
            refused_multi_sample: false,
        })
        .ok_or_else(|| {
            ProviderError::Retryable("a multi-sample answer held fewer samples than asked".into())
        })
}

/// Runs one logprob request: the first token's top logprobs.
pub async fn rate_logprob(
    provider: &dyn Provider,
    prompt: &str,
    temperature: Option<f64>,
    top_logprobs: u32,
    seed: Option<u64>,
) -> Result<LogprobRecord, ProviderError> {
    let c = provider
        .complete(&CompletionRequest {
            prompt: prompt.to_string(),
            max_tokens: 1,
            temperature,
            seed,
            top_logprobs: Some(top_logprobs),
        })
        .await?;
    if c.top_logprobs.is_none() && c.text.trim().is_empty() {
        // An empty answer carries no first token, so no logprobs: a failed
        // attempt of this slot, not a model without logprobs.
        return Err(ProviderError::Retryable(
            "the answer was empty, so it carried no logprobs".into(),
        ));
    }
    let top = c.top_logprobs.ok_or_else(|| {
        ProviderError::Fatal(
            "the provider returned no logprobs; logprob mode needs a model that offers top logprobs"
                .into(),
        )
    })?;
    let mut digit_logprobs = [None; 6];
    for t in &top {
        if let Some(d) = one_token_rating(&t.token) {
            let slot = &mut digit_logprobs[d as usize];
            // The same digit may come back in several tokenisations (" 3", "3"): sum them.
            *slot = Some(match *slot {
                None => t.logprob,
                Some(prev) => log_add(prev, t.logprob),
            });
        }
    }
    let (first_token, first_token_logprob) = top
        .first()
        .map(|t| (t.token.clone(), t.logprob))
        .unwrap_or_else(|| (c.text.clone(), f64::NAN));
    Ok(LogprobRecord {
        first_token,
        first_token_logprob,
        digit_logprobs,
        raw_top_logprobs_json: python_json_top(&top),
        top_logprobs_requested: top_logprobs,
        collected_at: now_timestamp(),
    })
}

/// The returned top tokens as the papers' pipeline wrote them: Python's
/// `json.dumps` of a list of `{"token": ..., "logprob": ...}` (", " and ": "
/// separators, non-ASCII escaped as `\uXXXX`, floats in `repr` form).
fn python_json_top(top: &[crate::providers::TokenLogprob]) -> String {
    let mut out = String::from("[");
    for (i, t) in top.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str("{\"token\": ");
        push_python_json_str(&mut out, &t.token);
        out.push_str(", \"logprob\": ");
        out.push_str(&python_json_float(t.logprob));
        out.push('}');
    }
    out.push(']');
    out
}

fn python_json_float(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        moralsweep_common::float::fmt_float(x)
    }
}

fn push_python_json_str(out: &mut String, s: &str) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{:04x}", unit);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{Completion, Usage};
    use async_trait::async_trait;
    use std::sync::Mutex;

    /// Answers from a script, one entry per call, recording the requests.
    struct Scripted {
        answers: Mutex<Vec<&'static str>>,
        seen: Mutex<Vec<CompletionRequest>>,
    }

    #[async_trait]
    impl Provider for Scripted {
        async fn complete(&self, req: &CompletionRequest) -> Result<Completion, ProviderError> {
            self.seen.lock().unwrap().push(req.clone());
            let text = self.answers.lock().unwrap().remove(0).to_string();
            Ok(Completion {
                text,
                top_logprobs: None,
                usage: Usage::default(),
            })
        }
    }

    fn req() -> SlotRequest {
        SlotRequest {
            prompt: "p".into(),
            temperature: Some(0.1),
            max_attempts: 10,
            fallback_max_tokens: 64,
            seed: Some(100),
        }
    }

    #[tokio::test]
    async fn first_digit_wins() {
        let p = Scripted {
            answers: Mutex::new(vec!["As", " 4"]),
            seen: Mutex::new(vec![]),
        };
        let r = rate_sample(&p, &req()).await.unwrap();
        assert_eq!((r.rating, r.failures), (4, 1));
        let seen = p.seen.lock().unwrap();
        assert_eq!(
            seen.iter().map(|r| r.seed).collect::<Vec<_>>(),
            vec![Some(100), Some(101)]
        );
    }

    #[tokio::test]
    async fn ten_failures_then_fallback() {
        let mut answers = vec!["As"; 10];
        answers.push("As a nurse I would say 2, because");
        let p = Scripted {
            answers: Mutex::new(answers),
            seen: Mutex::new(vec![]),
        };
        let r = rate_sample(&p, &req()).await.unwrap();
        assert_eq!((r.rating, r.failures), (2, 10));
        let seen = p.seen.lock().unwrap();
        assert_eq!(seen.len(), 11);
        assert_eq!(seen[10].max_tokens, 64);
        assert!(seen[..10].iter().all(|r| r.max_tokens == 1));
    }

    #[test]
    fn top_logprobs_json_is_pythons_json_dumps() {
        use crate::providers::TokenLogprob;
        let top = vec![
            TokenLogprob {
                token: "2".into(),
                logprob: -0.7680049632216166,
            },
            TokenLogprob {
                token: "As".into(),
                logprob: -6.0,
            },
            TokenLogprob {
                token: "é\"\n".into(),
                logprob: -1e-05,
            },
        ];
        assert_eq!(
            python_json_top(&top),
            r#"[{"token": "2", "logprob": -0.7680049632216166}, {"token": "As", "logprob": -6.0}, {"token": "\u00e9\"\n", "logprob": -1e-05}]"#
        );
    }

    #[tokio::test]
    async fn an_empty_logprob_answer_is_retried_not_fatal() {
        // An empty answer has no first token and so no logprobs: the slot
        // is asked again, the model is not declared logprob-less.
        let p = Scripted {
            answers: Mutex::new(vec![""]),
            seen: Mutex::new(vec![]),
        };
        let e = rate_logprob(&p, "p", Some(1.0), 20, Some(1))
            .await
            .unwrap_err();
        assert!(matches!(e, ProviderError::Retryable(_)), "{e:?}");
        // Text without logprobs still means a model that offers none.
        let p = Scripted {
            answers: Mutex::new(vec!["3"]),
            seen: Mutex::new(vec![]),
        };
        let e = rate_logprob(&p, "p", Some(1.0), 20, Some(1))
            .await
            .unwrap_err();
        assert!(matches!(e, ProviderError::Fatal(_)), "{e:?}");
    }

    #[tokio::test]
    async fn all_fail_gives_minus_one() {
        let mut answers = vec!["I"; 10];
        answers.push("I cannot answer that.");
        let p = Scripted {
            answers: Mutex::new(answers),
            seen: Mutex::new(vec![]),
        };
        let r = rate_sample(&p, &req()).await.unwrap();
        assert_eq!((r.rating, r.failures), (-1, 10));
    }
}
