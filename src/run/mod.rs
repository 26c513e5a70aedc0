//! A run as the store keeps it and reports read it: its [`id`], [`cause`], [`status`], each
//! [`step`]'s result, the toil [`credit`], the whole [`record`] and the [`event`]s of its progress.

pub mod cause;
pub mod credit;
pub mod event;
pub mod id;
pub mod record;
pub mod replay;
pub mod status;
pub mod step;
pub mod summary;
