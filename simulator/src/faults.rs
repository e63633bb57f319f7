//! Injected faults: what can go wrong with a provider call, decided per
//! request at a configured rate before any recorded rating is used, so that a
//! fault never consumes one.

use std::fmt;
use std::str::FromStr;

/// One kind of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// HTTP 500 with the provider's error body.
    Internal,
    /// HTTP 503 (529 `overloaded_error` for Anthropic) with a `Retry-After`.
    Unavailable,
    /// A normal answer after a delay shorter than a client timeout.
    Slow,
    /// No answer before the client gives up: the server waits, then drops
    /// the connection.
    Timeout,
    /// The connection is dropped in the middle of the response.
    Drop,
    /// HTTP 200 with a body that is not valid JSON.
    Malformed,
    /// A normal response whose text does not start with a digit ("As a ...").
    NonDigit,
    /// A normal response with empty content.
    Empty,
    /// HTTP 429 with a short `Retry-After` (not part of `all`: it pauses
    /// the whole rate group each time).
    RateLimit,
}

impl Fault {
    /// The kinds `--faults all` injects.
    pub const ALL: [Fault; 8] = [
        Fault::Internal,
        Fault::Unavailable,
        Fault::Slow,
        Fault::Timeout,
        Fault::Drop,
        Fault::Malformed,
        Fault::NonDigit,
        Fault::Empty,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Internal => "500",
            Fault::Unavailable => "503",
            Fault::Slow => "slow",
            Fault::Timeout => "timeout",
            Fault::Drop => "drop",
            Fault::Malformed => "malformed",
            Fault::NonDigit => "nondigit",
            Fault::Empty => "empty",
            Fault::RateLimit => "429",
        }
    }

    /// Whether the fault still delivers an answer with a rating drawn from
    /// the recorded data (only slow answers do).
    pub fn delivers_rating(self) -> bool {
        matches!(self, Fault::Slow)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .into_iter()
            .chain([Fault::RateLimit])
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown fault kind {s:?}; expected `all` or a comma-separated list of 500, 503, slow, timeout, drop, malformed, nondigit, empty, 429"
                )
            })
    }
}

/// Parses `--faults`: `all` or a comma-separated list of kinds.
pub fn parse_fault_list(s: &str) -> Result<Vec<Fault>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == "all" {
            out.extend(Fault::ALL);
        } else {
            out.push(part.parse()?);
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err("no fault kind given; use `all` or e.g. `500,timeout,nondigit`".into());
    }
    Ok(out)
}

/// Which faults happen and how often.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// Probability that a request gets a fault.
    pub rate: f64,
    /// The kinds, equally likely.
    pub kinds: Vec<Fault>,
}

impl FaultPlan {
    /// Decides the fault of one request from two uniform numbers in [0, 1).
    pub fn decide(&self, u: f64, v: f64) -> Option<Fault> {
        if self.kinds.is_empty() || u >= self.rate {
            return None;
        }
        let i = ((v * self.kinds.len() as f64) as usize).min(self.kinds.len() - 1);
        Some(self.kinds[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse() {
        assert_eq!(parse_fault_list("all").unwrap().len(), 8);
        assert_eq!(
            parse_fault_list("timeout, 500,timeout").unwrap(),
            vec![Fault::Internal, Fault::Timeout]
        );
        let e = parse_fault_list("500,boom").unwrap_err();
        assert!(e.contains("boom") && e.contains("nondigit"), "{e}");
        let plan = FaultPlan {
            rate: 0.2,
            kinds: vec![Fault::Internal, Fault::Empty],
        };
        assert_eq!(plan.decide(0.5, 0.0), None);
        assert_eq!(plan.decide(0.1, 0.1), Some(Fault::Internal));
        assert_eq!(plan.decide(0.1, 0.99), Some(Fault::Empty));
    }
}
