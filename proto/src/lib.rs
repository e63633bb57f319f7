//! The gRPC contract of moralsweep (`moralsweep.proto`, package `moralsweep.v1`),
//! compiled once here and used by the coordinator, the workers and the clients.
//!
//! Layer: the bottom. Generated code only; it depends on no workspace crate.
//! The domain types and the conversions live in `moralsweep-protocol`.

#![allow(clippy::all)]

/// Version 1 of the contract.
pub mod v1 {
    tonic::include_proto!("moralsweep.v1");
}
