//! The engine between triggers and the executor: records a run's progress ([`recorder`]) and
//! counts what happens ([`metrics`]).

pub mod metrics;
pub mod recorder;
