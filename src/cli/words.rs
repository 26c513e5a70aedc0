//! Small wordings shared by commands.

/// `1 file`, `2 files` ([`crate::report::human::count`], shared with the dashboard).
pub use crate::report::human::count as plural;

/// Minutes without a trailing `.0`.
pub fn format_minutes(m: f64) -> String {
    if m.fract() == 0.0 {
        format!("{m:.0}")
    } else {
        format!("{m:.1}")
    }
}
