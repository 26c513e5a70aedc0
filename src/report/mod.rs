//! Reports read from the store: the [`toil`] report and the automation [`backlog`] of a
//! [`period`], asked for by a [`query`], rendered as a [`table`], JSON, CSV or Markdown; the
//! [`digest`] of both for a chat message; and how figures are written for people everywhere
//! ([`human`]).

pub mod backlog;
pub mod cell;
pub mod digest;
pub mod human;
pub mod period;
pub mod query;
pub mod table;
pub mod toil;
