//! Alert sources beyond Alertmanager: defined sources (`--sources DIR`, one YAML file each)
//! loaded with located diagnostics ([`definition`]), their names ([`name`]), how a JSON body
//! becomes an alert ([`mapping`], and the PagerDuty preset, [`pagerduty`]), the loaded sources by
//! name ([`catalog`]), and how a signed webhook is checked ([`verify`], with its [`secret`]s).

pub mod catalog;
pub mod definition;
pub mod mapping;
pub mod name;
pub mod pagerduty;
pub mod receiver;
pub mod secret;
pub mod verify;
