//! Constants both ends must agree on.

/// Largest gRPC message accepted or sent (a submission carries its personas).
pub const MAX_MESSAGE: usize = 64 << 20;

/// The temperature logprob requests are sent with (the papers' files say 1.0;
/// the temperature is applied afterwards, when the metrics are computed).
pub const LOGPROB_REQUEST_TEMPERATURE: f64 = 1.0;
