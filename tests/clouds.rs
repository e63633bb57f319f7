//! The clouds (issue 25), one module each under `tests/clouds/`.

mod common;

#[path = "clouds/bedrock.rs"]
mod bedrock;
