//! Argument structs and thin entry points of the subcommands.

pub mod analyze;
pub mod cluster;
pub mod live;
pub mod models;
pub mod report;
pub mod results_dir;
pub mod run;
pub mod sim;
