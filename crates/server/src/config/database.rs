//! `[database]`: the store behind clients and room history.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::checks::Checks;

/// The store implementation a `database.url` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseBackend {
    /// Embedded SQLite: `sqlite://PATH` or `sqlite::memory:`.
    Sqlite,
    /// PostgreSQL: `postgres://…` or `postgresql://…`.
    Postgres,
    /// Google Cloud Firestore: `firestore://PROJECT_ID` (or `firestore://` with
    /// `[firestore] project_id`).
    Firestore,
}

// === impl DatabaseBackend ===

impl DatabaseBackend {
    /// The backend for `url`, or `None` if the URL selects none of them.
    pub fn from_url(url: &str) -> Option<Self> {
        if url == "sqlite::memory:" {
            return Some(Self::Sqlite);
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            return (!path.is_empty()).then_some(Self::Sqlite);
        }
        if url.starts_with("firestore://") {
            return Some(Self::Firestore);
        }
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))?;
        (!rest.is_empty()).then_some(Self::Postgres)
    }
}

/// `[database]`: connection URL, pool size and retry policy.
///
/// `Debug` prints the URL with its password replaced by `***`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH`, `sqlite::memory:`, `postgres://user:password@host/db`, or
    /// `firestore://PROJECT_ID`.
    pub url: String,
    /// Seconds one database operation may take.
    pub operation_timeout: u64,
    /// Retries of a failed operation (0 = no retry).
    pub retry_attempts: u32,
    /// Milliseconds between retries.
    pub retry_interval: u64,
    /// Connections in the pool.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://signal-manager.db".to_owned(),
            operation_timeout: 5,
            retry_attempts: 3,
            retry_interval: 100,
            max_connections: 8,
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.redacted_url())
            .field("operation_timeout", &self.operation_timeout)
            .field("retry_attempts", &self.retry_attempts)
            .field("retry_interval", &self.retry_interval)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

// === impl DatabaseConfig ===

impl DatabaseConfig {
    /// The backend `url` selects. Meaningful once [`super::Config::validate`] has passed;
    /// an unsupported URL reads as SQLite.
    pub fn backend(&self) -> DatabaseBackend {
        DatabaseBackend::from_url(&self.url).unwrap_or(DatabaseBackend::Sqlite)
    }

    /// `url` with any password (in the user info or a `password` query parameter)
    /// replaced by `***`, fit for logs and error messages.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    pub(crate) fn check(&self, c: &mut Checks) {
        if DatabaseBackend::from_url(&self.url).is_none() {
            c.fail(
                "database.url",
                format!(
                    "unsupported URL {:?}: expected sqlite://PATH, sqlite::memory:, \
                     postgres://…, postgresql://… or firestore://PROJECT_ID",
                    self.redacted_url()
                ),
            );
        }
        c.at_least("database.operation_timeout", self.operation_timeout, 1);
        c.at_least("database.max_connections", self.max_connections, 1);
    }
}

/// Replaces the password of `scheme://user:password@rest` and the values of query
/// parameters whose name contains `password`. Unsure cases are over-redacted: the user
/// info is taken to end at the *last* `@`, since a password may hold unescaped `/` or `?`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return redact_query(url);
    };
    let (scheme, rest) = url.split_at(scheme_end);
    let Some(at) = rest.rfind('@') else {
        return format!("{scheme}{}", redact_query(rest));
    };
    let (user_info, host_and_path) = (&rest[..at], &rest[at + 1..]);
    let user = match user_info.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => user_info.to_owned(),
    };
    format!("{scheme}{user}@{}", redact_query(host_and_path))
}

fn redact_query(s: &str) -> String {
    let Some((base, query)) = s.split_once('?') else {
        return s.to_owned();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _)) if name.to_ascii_lowercase().contains("password") => {
                format!("{name}=***")
            }
            _ => param.to_owned(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends() {
        use DatabaseBackend::*;
        for (url, want) in [
            ("sqlite://signal-manager.db", Some(Sqlite)),
            ("sqlite:///var/lib/x.db?mode=rwc", Some(Sqlite)),
            ("sqlite::memory:", Some(Sqlite)),
            ("postgres://u:p@h/db", Some(Postgres)),
            ("postgresql://h/db", Some(Postgres)),
            ("sqlite://", None),
            ("postgres://", None),
            ("mysql://h/db", None),
            ("signal-manager.db", None),
            ("", None),
        ] {
            assert_eq!(DatabaseBackend::from_url(url), want, "{url}");
        }
    }

    #[test]
    fn redaction() {
        for (url, want) in [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u:p@w/d?x@h/db", "postgres://u:***@h/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://h/db?user=u&password=pw&sslpassword=x",
                "postgres://h/db?user=u&password=***&sslpassword=***",
            ),
            ("sqlite::memory:", "sqlite::memory:"),
            ("mysql://root:pw@h", "mysql://root:***@h"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }
}
