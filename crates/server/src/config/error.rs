//! Configuration errors: each problem names the key and, when known, where it came from.

use std::fmt;
use std::path::PathBuf;

/// One problem with the configuration, tied to the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The dotted key (`server.port`, `auth.api_keys[1]`), or the section name for a
    /// section-level problem. Empty only for problems that concern a whole source (a TOML
    /// syntax error).
    pub key: String,
    /// Where the offending value came from (`TOML file config.toml`, `environment variable
    /// SIGNAL_MANAGER_SERVER_PORT`), when known. Semantic checks leave it `None`.
    pub origin: Option<String>,
    /// What is wrong, without the secret values involved.
    pub message: String,
}

// === impl ConfigIssue ===

impl ConfigIssue {
    /// An issue about `key` with no known origin.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            origin: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.key.is_empty(), &self.origin) {
            (false, Some(origin)) => write!(f, "{} (from {origin}): {}", self.key, self.message),
            (false, None) => write!(f, "{}: {}", self.key, self.message),
            (true, Some(origin)) => write!(f, "{origin}: {}", self.message),
            (true, None) => f.write_str(&self.message),
        }
    }
}

/// Why a configuration could not be loaded or is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file named on the command line cannot be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The path that was given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The sources do not parse into the configuration types: TOML syntax, an unknown
    /// section or key, a value of the wrong type, a malformed environment variable name.
    #[error("cannot load configuration: {}", Joined(issues))]
    Load {
        /// Every problem found, in source order where known.
        issues: Vec<ConfigIssue>,
    },
    /// The configuration parsed but a semantic check failed (a range, a relation between
    /// keys, a missing file).
    #[error("invalid configuration: {}", Joined(issues))]
    Invalid {
        /// Every failed check.
        issues: Vec<ConfigIssue>,
    },
}

// === impl ConfigError ===

impl ConfigError {
    /// The individual problems; empty for [`ConfigError::Read`].
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            Self::Read { .. } => &[],
            Self::Load { issues } | Self::Invalid { issues } => issues,
        }
    }
}

/// Displays issues on one line, separated by `; `.
struct Joined<'a>(&'a [ConfigIssue]);

impl fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}
