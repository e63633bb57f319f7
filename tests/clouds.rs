//! The clouds' providers end to end, one module per cloud.

mod common;

#[path = "clouds/vertex.rs"]
mod vertex;
