//! The clouds (issue 25): each cloud's provider through the real binary
//! against `moralsweep sim`, its credential chain, its errors and its
//! official SDKs. One module per cloud.

mod common;

#[path = "clouds/azure.rs"]
mod azure;
