//! Toil accounting: the credit a run earns ([`toil`]), what each finished run adds to the
//! [`rollup`]s reports read, and the duration [`histogram`] they carry.

pub mod histogram;
pub mod rollup;
pub mod toil;
