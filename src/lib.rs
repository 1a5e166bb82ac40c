//! composeops: keep a Docker host converged to compose files in git.
//!
//! The pipeline runs in one direction (see DESIGN.md): [`load`] reads the compose files into a
//! [`model::Project`]; later stages resolve image digests, observe the engine, plan and apply.

pub mod agent;
pub mod apply;
pub mod build;
pub mod compose_hash;
pub mod configs;
pub mod converge;
pub mod down;
pub mod duration;
pub mod engine;
pub mod error;
pub mod fleet;
pub(crate) mod fsutil;
pub(crate) mod image_pull;
pub mod journal;
pub mod load;
pub mod lock;
pub mod model;
pub mod namespaces;
pub mod observe;
pub mod plan;
pub mod progress;
pub mod pull;
pub mod resolve;
pub mod saved_plan;
pub mod spec;
pub mod status;
pub mod update;
