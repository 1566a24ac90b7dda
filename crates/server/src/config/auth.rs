//! `[auth]`: how clients prove who they are.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde::{Deserialize, Serialize};

use super::checks::Checks;
use super::secret::Secret;

/// The credential check used for CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// The seeds' default: the CONNECT `auth_token` is checked as a token (against
    /// `api_keys`, or as a JWT when `token_secret` is set).
    #[default]
    Token,
    /// An HS256 JWT signed with `token_secret`; requires `token_secret`.
    Jwt,
    /// Only `api_keys`.
    ApiKey,
}

/// `[auth]`: credentials accepted on CONNECT.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// HS256 signing key for JWTs; `None` disables JWT authentication.
    pub token_secret: Option<Secret>,
    /// Lifetime of issued tokens, seconds.
    pub token_expiry: u64,
    /// Which credential check CONNECT uses.
    pub auth_method: AuthMethod,
    /// Static credentials, each `"client_id:token"`.
    pub api_keys: Vec<String>,
    /// Accept clients that present no credentials.
    pub allow_anonymous: bool,
    /// Client ids with the admin role (API keys, registered clients, JWT subjects):
    /// every room visible, the admin API.
    pub admin_clients: Vec<String>,
    /// Seconds a registered token lasts after REGISTER (0: until UNREGISTER). A token
    /// registered over a JWT never outlives the JWT, whatever this says.
    pub registered_token_ttl: u64,
    /// Seconds before its credential expires that an open connection is warned
    /// (TOKEN_EXPIRING); it is closed when the credential expires, unless refreshed.
    pub expiry_warning: u64,
}

impl std::fmt::Debug for AuthConfig {
    /// API key tokens are secrets: only their client ids are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self
            .api_keys
            .iter()
            .map(|k| match k.split_once(':') {
                Some((id, _)) => format!("{id}:***"),
                None => "***".to_owned(),
            })
            .collect();
        f.debug_struct("AuthConfig")
            .field("token_secret", &self.token_secret)
            .field("token_expiry", &self.token_expiry)
            .field("auth_method", &self.auth_method)
            .field("api_keys", &keys)
            .field("allow_anonymous", &self.allow_anonymous)
            .field("admin_clients", &self.admin_clients)
            .field("registered_token_ttl", &self.registered_token_ttl)
            .field("expiry_warning", &self.expiry_warning)
            .finish()
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token_secret: None,
            token_expiry: 3600,
            auth_method: AuthMethod::Token,
            api_keys: Vec::new(),
            allow_anonymous: false,
            admin_clients: Vec::new(),
            registered_token_ttl: 0,
            expiry_warning: 60,
        }
    }
}

// === impl AuthConfig ===

impl AuthConfig {
    /// The well-formed entries of `api_keys` as `(client_id, token)`; malformed entries
    /// (which `validate()` reports) are skipped.
    pub fn parsed_api_keys(&self) -> Vec<(String, String)> {
        self.api_keys
            .iter()
            .filter_map(|entry| parse_api_key(entry))
            .map(|(id, token)| (id.to_owned(), token.to_owned()))
            .collect()
    }

    pub(crate) fn check(&self, c: &mut Checks) {
        if let Some(secret) = &self.token_secret
            && secret.is_empty()
        {
            c.fail(
                "auth.token_secret",
                "must not be empty (omit it to disable JWT)",
            );
        }
        if self.auth_method == AuthMethod::Jwt && self.token_secret.is_none() {
            c.fail(
                "auth.token_secret",
                "required when auth.auth_method = \"jwt\"",
            );
        }
        c.at_least("auth.token_expiry", self.token_expiry, 1);
        for (i, id) in self.admin_clients.iter().enumerate() {
            if id.trim().is_empty() || id.chars().any(char::is_whitespace) {
                c.fail(
                    format!("auth.admin_clients[{i}]"),
                    "expected a client id (not empty, no whitespace)",
                );
            }
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, entry) in self.api_keys.iter().enumerate() {
            let key = format!("auth.api_keys[{i}]");
            // The entry holds a token: never echo it.
            let Some((id, _)) = parse_api_key(entry) else {
                c.fail(key, "expected \"client_id:token\"");
                continue;
            };
            match seen.entry(id) {
                Entry::Occupied(first) => c.fail(
                    key,
                    format!(
                        "duplicate client_id {id:?} (also in auth.api_keys[{}])",
                        first.get()
                    ),
                ),
                Entry::Vacant(slot) => {
                    slot.insert(i);
                }
            }
        }
    }
}

/// Splits `"client_id:token"`; both parts non-empty and without whitespace.
fn parse_api_key(entry: &str) -> Option<(&str, &str)> {
    let (id, token) = entry.split_once(':')?;
    let well_formed = |part: &str| !part.is_empty() && !part.chars().any(char::is_whitespace);
    (well_formed(id) && well_formed(token)).then_some((id, token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_parsing() {
        assert_eq!(parse_api_key("a:b"), Some(("a", "b")));
        assert_eq!(parse_api_key("a:b:c"), Some(("a", "b:c")));
        for bad in ["", "a", ":b", "a:", "a :b", "a: b"] {
            assert_eq!(parse_api_key(bad), None, "{bad:?}");
        }
    }
}
