//! Runbook files to a catalog: YAML parsed with positions ([`loader`], [`spec`],
//! [`source_map`]; the parts of a wrong shape taken out, [`pruned`]), validated into the
//! [`model`] with located [`diagnostic`]s ([`validator`]), templates checked ([`template`]),
//! installed [`plugins`] known, and the [`catalog`] of loaded runbooks.

pub mod catalog;
pub mod diagnostic;
pub mod input;
pub mod loader;
pub mod model;
pub mod plugins;
pub mod pruned;
pub mod source_map;
pub mod sources;
pub mod spec;
pub mod suggest;
pub mod target;
pub mod template;
pub mod validator;
