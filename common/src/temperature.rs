//! The temperature that stands for "the provider's default": a spec's model
//! without a temperature is sampled at it, and its files and rows carry it
//! (`moralsweep_analysis::formats` names and writes them).

/// The temperature of the files of a model sampled at its provider's
/// default (`_tempdefault`). Negative, so it equals no real temperature
/// (those are >= 0) and sorts before them; test with [`is_provider_default`].
pub const PROVIDER_DEFAULT: f64 = -1.0;

/// Whether a temperature of a file or row stands for the provider's default.
pub fn is_provider_default(temperature: f64) -> bool {
    temperature < 0.0
}
