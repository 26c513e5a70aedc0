//! Executing a run: the [`executor`] runs steps in order ([`step`]: shell, HTTP, plugin) with
//! templates [`render`]ed, processes spawned and killed by group ([`process`]), output
//! [`capture`]d and secrets [`redact`]ed.

pub mod capture;
pub mod environment;
pub mod executor;
pub mod plan;
pub mod process;
pub mod recorder;
pub mod redact;
pub mod render;
pub mod step;
pub mod taint;
pub mod url;
