//! The clouds' providers end to end (issue 25), one module per cloud under
//! `tests/clouds/`.

mod common;

#[path = "clouds/bedrock.rs"]
mod bedrock;
#[path = "clouds/vertex.rs"]
mod vertex;
