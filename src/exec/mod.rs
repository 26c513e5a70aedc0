//! Executing a run: the [`executor`] runs steps in order ([`step`]: shell, HTTP, plugin) with
//! templates [`render`]ed, processes spawned and killed by group ([`process`]), output
//! [`capture`]d and secrets [`redact`]ed in every [`secret_form`] they take, output streams
//! before anything cuts them ([`redact_stream`]).

pub mod capture;
pub mod condition;
pub mod environment;
pub mod executor;
pub mod plan;
pub mod preparation;
pub mod process;
pub mod recorder;
pub mod redact;
pub mod redact_stream;
pub mod render;
pub mod secret_form;
pub mod step;
pub mod taint;
pub mod url;
