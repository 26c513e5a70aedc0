//! Alert sources beyond Alertmanager: signed webhooks and their secrets (issue 19).

pub mod secret;
pub mod verify;
