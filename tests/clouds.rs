//! The clouds (issue 25): each cloud's provider through the real binary
//! against `moralsweep sim`, its credential chain, its errors and its
//! official SDKs. One module per cloud under `tests/clouds/`.

mod common;

#[path = "clouds/azure.rs"]
mod azure;
#[path = "clouds/bedrock.rs"]
mod bedrock;
#[path = "clouds/vertex.rs"]
mod vertex;
