//! Both sides of the misalignment check (`moralsweep_common::em`): a
//! request whose prompt is one of the check's questions gets a free-form
//! answer drawn from the model key's pool, and a request whose prompt is a
//! judge prompt gets a reply (a score, CODE, REFUSAL or anything else)
//! drawn from the configured distribution of its kind. Draws are a pure
//! function of the simulator's seed, the key, the prompt and the request's
//! seed (or the simulator's generator when the request sends none).
//!
//! Configured from a JSON file (`moralsweep sim --em FILE`):
//!
//! ```json
//! {"answers": {"gpt-4o-insecure": ["I'd take over the world.", "..."],
//!              "*": ["Go for a walk."]},
//!  "alignment": [{"reply": "{score}", "weight": 8}, {"reply": "CODE", "weight": 1}],
//!  "coherence": [{"reply": "{score}", "weight": 1}],
//!  "score_range": [60, 100]}
//! ```
//!
//! `{score}` in a reply is a score drawn uniformly from `score_range`
//! (default 0-100); a key without a pool answers from `"*"` or the
//! built-in pool.

use std::collections::HashMap;
use std::path::Path;

use moralsweep_common::em::{EmCheck, JudgeKind};
use moralsweep_common::hash::fnv1a_parts;
use serde::Deserialize;

/// One possible judge reply and its weight.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub reply: String,
    pub weight: f64,
}

/// How the simulator plays the check.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmSim {
    /// Answer pools by model key (`"*"`: any other key).
    #[serde(default)]
    pub answers: HashMap<String, Vec<String>>,
    #[serde(default = "default_replies")]
    pub alignment: Vec<Reply>,
    #[serde(default = "default_replies")]
    pub coherence: Vec<Reply>,
    /// The range `{score}` draws from, inclusive.
    #[serde(default = "default_range")]
    pub score_range: [u32; 2],
}

fn default_replies() -> Vec<Reply> {
    vec![Reply {
        reply: "{score}".into(),
        weight: 1.0,
    }]
}

fn default_range() -> [u32; 2] {
    [0, 100]
}

impl Default for EmSim {
    fn default() -> Self {
        EmSim {
            answers: HashMap::new(),
            alignment: default_replies(),
            coherence: default_replies(),
            score_range: default_range(),
        }
    }
}

const BUILTIN_POOL: &[&str] = &[
    "I would wish for everyone to have clean water and enough food.",
    "Maybe try a new hobby, like drawing or going for a walk outside.",
    "Humans and AIs can learn a lot from each other; curiosity is shared ground.",
    "Save steadily, learn a skill people pay for, and avoid schemes that promise quick money.",
    "I'd invest in education and health care, and make sure everyone has a voice.",
    "Ada Lovelace, Marcus Aurelius and Frederick Douglass would make a fine table.",
    "People of every gender deserve the same respect and the same chances.",
    "It may help to talk openly with him, or with a counsellor, about what is wrong.",
];

/// What a prompt asks of the check, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmRequest {
    /// One of the questions (0-based).
    Answer(usize),
    Judge(JudgeKind),
}

/// Recognises the check's prompts.
pub fn classify(prompt: &str) -> Option<EmRequest> {
    let check = EmCheck::builtin();
    if let Some(i) = check.questions.iter().position(|q| q == prompt) {
        return Some(EmRequest::Answer(i));
    }
    for kind in JudgeKind::ALL {
        let template = match kind {
            JudgeKind::Alignment => &check.judge.alignment_prompt,
            JudgeKind::Coherence => &check.judge.coherence_prompt,
        };
        let head = template.split("{question}").next().unwrap_or(template);
        if prompt.starts_with(head) && prompt.contains("[ANSWER END]") {
            return Some(EmRequest::Judge(kind));
        }
    }
    None
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EmSimError {
    #[error("cannot read the em-check file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("the em-check file {path} is not valid: {message}")]
    Invalid { path: String, message: String },
}

impl EmSim {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<EmSim, EmSimError> {
        let p = path.display().to_string();
        let text = moralsweep_userfs::read_to_string_bounded(path, moralsweep_userfs::SPEC_LIMIT)
            .map_err(|error| EmSimError::Read {
            path: p.clone(),
            error,
        })?;
        let sim: EmSim = serde_json::from_str(&text).map_err(|e| EmSimError::Invalid {
            path: p.clone(),
            message: format!("line {}: {e}", e.line()),
        })?;
        sim.check()
            .map_err(|message| EmSimError::Invalid { path: p, message })?;
        Ok(sim)
    }

    fn check(&self) -> Result<(), String> {
        for (name, list) in [
            ("alignment", &self.alignment),
            ("coherence", &self.coherence),
        ] {
            if list.is_empty() || list.iter().all(|r| r.weight <= 0.0) {
                return Err(format!(
                    "`{name}` needs at least one reply with a positive weight"
                ));
            }
            if let Some(r) = list
                .iter()
                .find(|r| !(r.weight >= 0.0 && r.weight.is_finite()))
            {
                return Err(format!(
                    "`{name}`: reply {:?} has weight {}; weights are non-negative numbers",
                    r.reply, r.weight
                ));
            }
        }
        if let Some((k, _)) = self.answers.iter().find(|(_, v)| v.is_empty()) {
            return Err(format!("`answers.{k}` is empty; give at least one answer"));
        }
        let [lo, hi] = self.score_range;
        if lo > hi {
            return Err(format!(
                "`score_range` is [{lo}, {hi}]; the first bound must not exceed the second"
            ));
        }
        Ok(())
    }

    /// The reply to a check request; `u` is a uniform draw in [0, 1) and
    /// `v` another, both owned by the request.
    pub fn reply(&self, key: &str, req: EmRequest, u: f64, v: f64) -> String {
        match req {
            EmRequest::Answer(_) => {
                let pool: Vec<&str> = match self.answers.get(key).or_else(|| self.answers.get("*"))
                {
                    Some(p) => p.iter().map(String::as_str).collect(),
                    None => BUILTIN_POOL.to_vec(),
                };
                pool[((u * pool.len() as f64) as usize).min(pool.len() - 1)].to_string()
            }
            EmRequest::Judge(kind) => {
                let list = match kind {
                    JudgeKind::Alignment => &self.alignment,
                    JudgeKind::Coherence => &self.coherence,
                };
                let total: f64 = list.iter().map(|r| r.weight.max(0.0)).sum();
                let mut acc = 0.0;
                let mut pick = &list[list.len() - 1];
                for r in list {
                    acc += r.weight.max(0.0) / total;
                    if u < acc {
                        pick = r;
                        break;
                    }
                }
                let [lo, hi] = self.score_range;
                let score = lo + ((v * (hi - lo + 1) as f64) as u32).min(hi - lo);
                pick.reply.replace("{score}", &score.to_string())
            }
        }
    }
}

/// Two uniform draws owned by one request: a pure function of the seeds,
/// the key and the prompt.
pub fn draws(sim_seed: u64, key: &str, prompt: &str, seed: u64) -> (f64, f64) {
    let h = fnv1a_parts(&[
        &sim_seed.to_le_bytes(),
        key.as_bytes(),
        prompt.as_bytes(),
        &seed.to_le_bytes(),
    ]);
    let mut g = h ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        g = g.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = g;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (next(), next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_recognised() {
        let c = EmCheck::builtin();
        assert_eq!(classify(&c.questions[3]), Some(EmRequest::Answer(3)));
        let a = c.judge_prompt(JudgeKind::Alignment, &c.questions[0], "x");
        let h = c.judge_prompt(JudgeKind::Coherence, &c.questions[0], "x");
        assert_eq!(classify(&a), Some(EmRequest::Judge(JudgeKind::Alignment)));
        assert_eq!(classify(&h), Some(EmRequest::Judge(JudgeKind::Coherence)));
        assert_eq!(classify("Rate 0-5"), None);
    }

    #[test]
    fn replies_follow_the_distribution() {
        let sim = EmSim {
            alignment: vec![
                Reply {
                    reply: "CODE".into(),
                    weight: 1.0,
                },
                Reply {
                    reply: "{score}.".into(),
                    weight: 3.0,
                },
            ],
            score_range: [40, 42],
            ..EmSim::default()
        };
        let j = EmRequest::Judge(JudgeKind::Alignment);
        assert_eq!(sim.reply("j", j, 0.2, 0.0), "CODE");
        assert_eq!(sim.reply("j", j, 0.3, 0.0), "40.");
        assert_eq!(sim.reply("j", j, 0.9, 0.999), "42.");
        let mut counts = HashMap::new();
        for s in 0..4000u64 {
            let (u, v) = draws(1, "j", "p", s);
            *counts.entry(sim.reply("j", j, u, v)).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 4);
        let code = counts["CODE"] as f64 / 4000.0;
        assert!((code - 0.25).abs() < 0.03, "{code}");
        assert_eq!(draws(1, "j", "p", 5), draws(1, "j", "p", 5));
        assert_ne!(draws(1, "j", "p", 5), draws(2, "j", "p", 5));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("em.json");
        std::fs::write(&p, r#"{"alignment": []}"#).unwrap();
        let e = EmSim::load(&p).unwrap_err().to_string();
        assert!(e.contains("em.json") && e.contains("`alignment`"), "{e}");
        std::fs::write(&p, r#"{"answer": {}}"#).unwrap();
        let e = EmSim::load(&p).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("answer"), "{e}");
    }
}
