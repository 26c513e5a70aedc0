//! Alert sources beyond Alertmanager: defined sources (`--sources DIR`, one YAML file each)
//! loaded with located diagnostics ([`definition`]), their names ([`name`]), how a JSON body
//! becomes an alert ([`mapping`], and the PagerDuty preset, [`pagerduty`]), and the loaded
//! sources by name ([`catalog`]).

pub mod catalog;
pub mod definition;
pub mod mapping;
pub mod name;
pub mod pagerduty;
