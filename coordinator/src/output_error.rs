//! Why a sweep's files (rating files, answers files, metric files) were not
//! written or its metrics not computed. Both the rating files (`output.rs`)
//! and the misalignment check's files (`em_output.rs`) fail with it.
//!
//! An error's text is the whole story, step by step ("writing the metric
//! files to out/metrics: out/metrics/x.csv: No space left on device"), so
//! printing it once says everything; [`OutputError::causes`] gives the
//! underlying errors to decide whether retrying can help.

use std::error::Error;

use crate::store::StoreError;

/// A cause of any kind, kept so that it can be looked at (an I/O error's
/// code) as well as printed.
type Cause = Box<dyn Error + Send + Sync + 'static>;

/// Why writing a sweep's files or computing its metrics failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store's contents contradict the sweep: a result beyond the
    /// unit's slots, a missing result, one of the wrong kind.
    #[error("{0}")]
    Inconsistent(String),
    /// A step failed: what was being done, and why.
    #[error("{doing}: {}", chain(.cause.as_ref()))]
    Step { doing: String, cause: Cause },
    /// A file or the analysis failed (the error names the file).
    #[error("{}", chain(.0.as_ref()))]
    Failed(Cause),
}

/// An error and its sources, each after a colon.
fn chain(e: &(dyn Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

impl OutputError {
    /// The errors underneath this one, outermost first: each step's cause
    /// and that cause's sources.
    pub fn causes(&self) -> Vec<&(dyn Error + 'static)> {
        let mut out: Vec<&(dyn Error + 'static)> = Vec::new();
        let cause: &(dyn Error + 'static) = match self {
            OutputError::Store(_) | OutputError::Inconsistent(_) => return out,
            OutputError::Step { cause, .. } | OutputError::Failed(cause) => cause.as_ref(),
        };
        if let Some(inner) = cause.downcast_ref::<OutputError>() {
            out.push(cause);
            out.extend(inner.causes());
            return out;
        }
        let mut next = Some(cause);
        while let Some(e) = next {
            out.push(e);
            next = e.source();
        }
        out
    }
}

/// Errors a step may fail with, taken as they are.
macro_rules! failed_from {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for OutputError {
            fn from(e: $t) -> Self {
                OutputError::Failed(Box::new(e))
            }
        }
    )*};
}

failed_from!(
    std::io::Error,
    moralsweep_analysis::formats::FormatError,
    moralsweep_analysis::analyze::AnalyzeError,
    moralsweep_analysis::em::file::EmFileError,
    moralsweep_userfs::WriteError,
);

/// Names the step a result belongs to, like anyhow's `with_context`.
pub(crate) trait Doing<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, OutputError>;
}

impl<T, E: Error + Send + Sync + 'static> Doing<T> for Result<T, E> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, OutputError> {
        self.map_err(|e| OutputError::Step {
            doing: what(),
            cause: Box::new(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_every_step_and_the_causes_are_underneath() {
        let io = std::io::Error::from_raw_os_error(36);
        let inner: Result<(), _> = Err(io);
        let inner = inner.doing(|| "creating out/data".into()).unwrap_err();
        let outer: Result<(), _> = Err(inner);
        let e = outer.doing(|| "writing the files".into()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("writing the files: creating out/data: "),
            "{text}"
        );
        let codes: Vec<Option<i32>> = e
            .causes()
            .iter()
            .filter_map(|c| c.downcast_ref::<std::io::Error>())
            .map(|io| io.raw_os_error())
            .collect();
        assert_eq!(codes, [Some(36)]);
    }
}
