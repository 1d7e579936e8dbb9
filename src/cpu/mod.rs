//! CPU compatibility: what this CPU offers (`detect`), the cpuinfo image (`image`) and the
//! `--cpu-cap` comparison (`validate`).

pub mod detect;
pub mod image;
pub mod validate;
