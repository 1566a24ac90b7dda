//! A collector for semantic check failures, so `validate()` reports all of them at once.

use std::fmt::Display;

use super::error::ConfigIssue;

/// Accumulates [`ConfigIssue`]s while the sections check themselves.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    issues: Vec<ConfigIssue>,
}

// === impl Checks ===

impl Checks {
    /// Records a failure for `key`.
    pub(crate) fn fail(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.issues.push(ConfigIssue::new(key, message));
    }

    /// `value` must be at least `min`.
    pub(crate) fn at_least<T: PartialOrd + Display>(&mut self, key: &str, value: T, min: T) {
        if value < min {
            self.fail(key, format!("must be at least {min} (got {value})"));
        }
    }

    /// `value` must lie in `min..=max`.
    pub(crate) fn between<T: PartialOrd + Display>(&mut self, key: &str, value: T, min: T, max: T) {
        if value < min || value > max {
            self.fail(
                key,
                format!("must be between {min} and {max} (got {value})"),
            );
        }
    }

    /// `value` must not be empty or blank.
    pub(crate) fn not_blank(&mut self, key: &str, value: &str) {
        if value.trim().is_empty() {
            self.fail(key, "must not be empty");
        }
    }

    /// The collected issues.
    pub(crate) fn into_issues(self) -> Vec<ConfigIssue> {
        self.issues
    }
}
