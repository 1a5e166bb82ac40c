//! composeops: keep a Docker host converged to compose files in git.
//!
//! The pipeline runs in one direction (see DESIGN.md): [`load`] reads the compose files into a
//! [`model::Project`]; later stages resolve image digests, observe the engine, plan and apply.

pub mod agent;
pub mod apply;
pub(crate) mod build;
pub mod cleanup;
pub mod compose_hash;
pub(crate) mod configs;
pub mod converge;
pub(crate) mod down;
pub mod duration;
pub mod engine;
pub mod error;
pub mod fleet;
pub(crate) mod fsutil;
pub mod gate;
pub(crate) mod hostcmd;
pub(crate) mod image_pull;
pub mod journal;
pub mod load;
pub mod lock;
pub mod model;
pub(crate) mod namespaces;
pub(crate) mod observe;
pub mod plan;
pub mod progress;
pub mod pull;
pub mod resolve;
pub mod rollback;
pub mod saved_plan;
pub(crate) mod spec;
pub mod status;
pub mod track;
pub(crate) mod update;
pub mod verify;
