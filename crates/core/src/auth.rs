//! Authentication: configured API keys, HS256 JWTs, and the hashed tokens of registered
//! clients, tried in that order. Also the token hashing used for `registered_clients`.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    sync::Arc,
};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    error::CoreError,
    store::{Store, StoreError},
};

/// How a client proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A configured `auth.api_keys` entry.
    ApiKey,
    /// An HS256 JWT whose `sub` is the client id.
    Jwt,
    /// The token stored (hashed) when the client registered.
    Registered,
}

/// Who a token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The client id.
    pub client_id: String,
    /// Display name (a JWT's `name` claim).
    pub name: Option<String>,
    /// How it was proven.
    pub method: AuthMethod,
    /// What its credential allows.
    pub grants: Grants,
}

/// What a credential allows beyond proving who holds it: which rooms, and the admin role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// The rooms its holder may create or join: room ids, or prefixes ending in `*`
    /// (`"team-*"`); `None`: any room (a credential without a `rooms` claim).
    pub rooms: Option<Vec<String>>,
    /// The admin role: every room visible, the admin API.
    pub admin: bool,
    /// When the credential expires (Unix seconds): a JWT's `exp`, a registered token's
    /// expiry.
    pub expires: Option<u64>,
}

impl Grants {
    /// Whether its holder may create or join `room`.
    pub fn allows_room(&self, room: &str) -> bool {
        match &self.rooms {
            None => true,
            Some(list) => list.iter().any(|g| match g.strip_suffix('*') {
                Some(prefix) => room.starts_with(prefix),
                None => g == room,
            }),
        }
    }

    /// The rooms it grants, for an error message.
    pub fn rooms_label(&self) -> String {
        match &self.rooms {
            None => "any room".into(),
            Some(l) if l.is_empty() => "no room".into(),
            Some(l) => l.join(", "),
        }
    }

    /// These grants limited to `rooms`, if given.
    fn restricted_by(mut self, rooms: Option<Vec<String>>) -> Self {
        if rooms.is_some() {
            self.rooms = rooms;
        }
        self
    }
}

/// The key of a registered client's metadata that keeps when its token expires (Unix
/// seconds; set by the server, a client's own value is replaced).
pub const TOKEN_EXPIRES_KEY: &str = "token_expires_at";

/// Whether a registered client's token (its metadata) expired by `now` (Unix seconds).
pub fn token_expired(metadata: &serde_json::Value, now: i64) -> bool {
    token_expiry(metadata).is_some_and(|at| at <= now)
}

fn token_expiry(metadata: &serde_json::Value) -> Option<i64> {
    metadata.get(TOKEN_EXPIRES_KEY)?.as_i64()
}

/// The key of a registered client's metadata that keeps the rooms its registering
/// credential granted (set by the server; a client's own value is replaced).
pub const GRANTED_ROOMS_KEY: &str = "granted_rooms";

/// Claims of the JWTs the server accepts and issues.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    /// The client id.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Display name (room-path's `username`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The rooms its holder may create or join (ids, or prefixes ending in `*`); absent:
    /// any room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    /// The admin role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
}

/// Checks credentials. Cheap to share behind an `Arc`.
pub struct Authenticator {
    api_keys: HashMap<String, String>,
    jwt: Option<(DecodingKey, Validation)>,
    store: Arc<dyn Store>,
    /// Client ids with the admin role (`auth.admin_clients`).
    admins: HashSet<String>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("api_keys", &self.api_keys.len())
            .field("jwt", &self.jwt.is_some())
            .field("admins", &self.admins)
            .finish()
    }
}

// === impl Authenticator ===

impl Authenticator {
    /// Builds an authenticator from `(client_id, token)` API keys and an optional JWT secret.
    pub fn new(
        api_keys: impl IntoIterator<Item = (String, String)>,
        jwt_secret: Option<&str>,
        store: Arc<dyn Store>,
    ) -> Self {
        let jwt = jwt_secret.filter(|s| !s.is_empty()).map(|s| {
            let mut v = Validation::new(Algorithm::HS256);
            v.validate_aud = false;
            v.set_required_spec_claims(&["exp", "sub"]);
            (DecodingKey::from_secret(s.as_bytes()), v)
        });
        Self {
            api_keys: api_keys.into_iter().collect(),
            jwt,
            store,
            admins: HashSet::new(),
        }
    }

    /// Gives the admin role to these client ids (`auth.admin_clients`), however they
    /// authenticate.
    pub fn with_admins(mut self, admins: impl IntoIterator<Item = String>) -> Self {
        self.admins = admins.into_iter().collect();
        self
    }

    /// Whether `client_id` is listed as an admin.
    pub fn is_admin_client(&self, client_id: &str) -> bool {
        self.admins.contains(client_id)
    }

    fn base_grants(&self, client_id: &str) -> Grants {
        Grants {
            rooms: None,
            admin: self.admins.contains(client_id),
            expires: None,
        }
    }

    fn jwt_grants(&self, claims: &Claims) -> Grants {
        let mut g = self.base_grants(&claims.sub);
        g.admin |= claims.admin == Some(true);
        g.expires = Some(claims.exp);
        g.restricted_by(claims.rooms.clone())
    }

    /// Authenticates `(client_id, token)`: API key, then JWT, then registered token.
    /// Wrong credentials are 401; a database outage while checking a registered token is 503.
    pub async fn authenticate(
        &self,
        client_id: &str,
        token: &str,
    ) -> Result<AuthMethod, CoreError> {
        self.authenticate_grants(client_id, token)
            .await
            .map(|(m, _)| m)
    }

    /// [`authenticate`](Self::authenticate), with what the credential allows: a JWT's
    /// `rooms` and `admin` claims, a registered token's rooms kept from the credential it
    /// was registered over, the admin role of `auth.admin_clients`.
    pub async fn authenticate_grants(
        &self,
        client_id: &str,
        token: &str,
    ) -> Result<(AuthMethod, Grants), CoreError> {
        if token.is_empty() {
            return Err(CoreError::bad_request(
                "Missing or invalid 'auth_token' field",
            ));
        }
        if let Some(expected) = self.api_keys.get(client_id)
            && bool::from(expected.as_bytes().ct_eq(token.as_bytes()))
        {
            return Ok((AuthMethod::ApiKey, self.base_grants(client_id)));
        }
        // A token shaped like a JWT may still be a registered client's own token: a
        // JWT that fails verification falls through to the stored token, and its own
        // error is reported only if that fails too.
        let mut jwt_error = None;
        if looks_like_jwt(token) {
            match self.verify_jwt(token) {
                Ok(claims) if claims.sub == client_id => {
                    return Ok((AuthMethod::Jwt, self.jwt_grants(&claims)));
                }
                Ok(_) => {
                    jwt_error = Some(CoreError::unauthorized(
                        "Invalid authentication token: JWT subject does not match client_id",
                    ));
                }
                Err(e) if self.jwt.is_some() => jwt_error = Some(e),
                Err(_) => {}
            }
        }
        match self.store.get_client(client_id).await {
            Ok(Some(c)) if verify_token(token, &c.auth_token) => {
                let expires = token_expiry(&c.metadata);
                if let Some(at) = expires
                    && at <= chrono::Utc::now().timestamp()
                {
                    return Err(CoreError::unauthorized(format!(
                        "Registered token expired at {}: connect with another credential and REGISTER again",
                        chrono::DateTime::from_timestamp(at, 0)
                            .map_or_else(|| at.to_string(), |t| t.to_rfc3339())
                    )));
                }
                let mut g = self
                    .base_grants(client_id)
                    .restricted_by(granted_rooms(&c.metadata));
                g.expires = expires.and_then(|e| u64::try_from(e).ok());
                Ok((AuthMethod::Registered, g))
            }
            Ok(_) => Err(jwt_error
                .unwrap_or_else(|| CoreError::unauthorized("Invalid client_id or auth_token"))),
            Err(StoreError::Conflict(m) | StoreError::NoRoom(m) | StoreError::Internal(m)) => {
                tracing::error!(error = %m, "authenticate: database error");
                Err(CoreError::new(
                    crate::error::ErrorKind::Internal,
                    "Internal server error",
                ))
            }
            Err(e) => Err(CoreError::from_store("authenticate", e)),
        }
    }

    /// Finds who a bare token belongs to, for dialects that send a token without a client
    /// id (`?token=` or `Authorization: Bearer`): a JWT names its `sub` (and `name`); an
    /// API key token names its id; a registered client's token needs `client_id_hint`.
    pub async fn identify(
        &self,
        token: &str,
        client_id_hint: Option<&str>,
    ) -> Result<Identity, CoreError> {
        if token.is_empty() {
            return Err(CoreError::unauthorized("Missing authentication token"));
        }
        if looks_like_jwt(token) && self.jwt.is_some() {
            let claims = self.verify_jwt(token)?;
            if let Some(hint) = client_id_hint
                && hint != claims.sub
            {
                return Err(CoreError::unauthorized(
                    "Invalid authentication token: JWT subject does not match client_id",
                ));
            }
            let grants = self.jwt_grants(&claims);
            return Ok(Identity {
                client_id: claims.sub,
                name: claims.name,
                method: AuthMethod::Jwt,
                grants,
            });
        }
        let mut found = None;
        for (id, tok) in &self.api_keys {
            // Compare every key so timing does not tell which one matched.
            if bool::from(tok.as_bytes().ct_eq(token.as_bytes()))
                && client_id_hint.is_none_or(|h| h == id)
            {
                found = Some(id.clone());
            }
        }
        if let Some(client_id) = found {
            let grants = self.base_grants(&client_id);
            return Ok(Identity {
                client_id,
                name: None,
                method: AuthMethod::ApiKey,
                grants,
            });
        }
        match client_id_hint {
            Some(hint) => {
                let (method, grants) = self.authenticate_grants(hint, token).await?;
                Ok(Identity {
                    client_id: hint.to_owned(),
                    name: None,
                    method,
                    grants,
                })
            }
            None => Err(CoreError::unauthorized("Invalid authentication token")),
        }
    }

    /// Verifies an HS256 JWT (signature, `exp`) and returns its claims.
    pub fn verify_jwt(&self, token: &str) -> Result<Claims, CoreError> {
        let Some((key, validation)) = &self.jwt else {
            return Err(CoreError::unauthorized(
                "Invalid authentication token: JWT authentication is not configured",
            ));
        };
        jsonwebtoken::decode::<Claims>(token, key, validation)
            .map(|d| d.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let why = match e.kind() {
                    ErrorKind::ExpiredSignature => "JWT has expired",
                    ErrorKind::InvalidSignature => "JWT signature is invalid",
                    ErrorKind::MissingRequiredClaim(_) => "JWT lacks a required claim (sub, exp)",
                    _ => "JWT is malformed",
                };
                CoreError::unauthorized(format!("Invalid authentication token: {why}"))
            })
    }

    /// Whether JWTs are accepted (a secret is configured).
    pub fn jwt_enabled(&self) -> bool {
        self.jwt.is_some()
    }
}

/// The rooms a registered client's token grants, as [`GRANTED_ROOMS_KEY`] keeps them.
fn granted_rooms(metadata: &serde_json::Value) -> Option<Vec<String>> {
    metadata.get(GRANTED_ROOMS_KEY)?.as_array().map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    })
}

fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// Issues an HS256 JWT for `sub`, valid for `ttl_secs` (the `token` CLI command and tests).
pub fn issue_jwt(
    secret: &str,
    sub: &str,
    name: Option<&str>,
    ttl_secs: u64,
) -> Result<String, CoreError> {
    let now = chrono::Utc::now().timestamp().max(0) as u64;
    let claims = Claims {
        sub: sub.to_owned(),
        exp: now + ttl_secs,
        iat: Some(now),
        name: name.map(str::to_owned),
        rooms: None,
        admin: None,
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| {
        CoreError::new(
            crate::error::ErrorKind::Internal,
            format!("could not sign JWT: {e}"),
        )
    })
}

/// Hashes a client token for storage: `sha256$<salt hex>$<digest hex>`, a fresh random salt
/// per token. Tokens are compared in constant time by [`verify_token`].
pub fn hash_token(token: &str) -> String {
    let salt = uuid::Uuid::new_v4().simple().to_string();
    format!("sha256${salt}${}", digest(&salt, token))
}

/// Checks a token against a [`hash_token`] string.
pub fn verify_token(token: &str, stored: &str) -> bool {
    let mut parts = stored.splitn(3, '$');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("sha256"), Some(salt), Some(hex)) => {
            digest(salt, token).as_bytes().ct_eq(hex.as_bytes()).into()
        }
        _ => false,
    }
}

fn digest(salt: &str, token: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(token.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn auth() -> Authenticator {
        Authenticator::new(
            [("k1".to_owned(), "secret-1".to_owned())],
            Some("jwt-secret"),
            Arc::new(MemoryStore::new()),
        )
    }

    #[tokio::test]
    async fn api_keys_and_jwts_authenticate() {
        let a = auth();
        assert_eq!(
            a.authenticate("k1", "secret-1").await.unwrap(),
            AuthMethod::ApiKey
        );
        assert_eq!(
            a.authenticate("k1", "nope")
                .await
                .unwrap_err()
                .code()
                .as_u16(),
            401
        );
        let t = issue_jwt("jwt-secret", "alice", None, 60).unwrap();
        assert_eq!(a.authenticate("alice", &t).await.unwrap(), AuthMethod::Jwt);
        let e = a.authenticate("bob", &t).await.unwrap_err();
        assert!(e.message.contains("subject does not match"), "{e}");
        let forged = issue_jwt("other-secret", "alice", None, 60).unwrap();
        assert!(
            a.authenticate("alice", &forged)
                .await
                .unwrap_err()
                .message
                .contains("signature")
        );
    }

    #[tokio::test]
    async fn bare_tokens_identify_their_client() {
        let a = auth();
        let id = a.identify("secret-1", None).await.unwrap();
        assert_eq!(
            (id.client_id.as_str(), id.method),
            ("k1", AuthMethod::ApiKey)
        );
        let t = issue_jwt("jwt-secret", "alice", Some("Alice"), 60).unwrap();
        let id = a.identify(&t, None).await.unwrap();
        assert_eq!(
            (id.client_id.as_str(), id.name.as_deref()),
            ("alice", Some("Alice"))
        );
        assert_eq!(
            a.identify(&t, Some("bob"))
                .await
                .unwrap_err()
                .code()
                .as_u16(),
            401
        );
        assert_eq!(
            a.identify("nope", None).await.unwrap_err().code().as_u16(),
            401
        );
        assert_eq!(
            a.identify("secret-1", Some("k2"))
                .await
                .unwrap_err()
                .code()
                .as_u16(),
            401
        );
    }

    #[test]
    fn expired_jwt_is_refused() {
        let claims = Claims {
            sub: "a".into(),
            exp: 1_000,
            iat: None,
            name: None,
            rooms: None,
            admin: None,
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"jwt-secret"),
        )
        .unwrap();
        assert!(
            auth()
                .verify_jwt(&t)
                .unwrap_err()
                .message
                .contains("expired")
        );
    }

    #[tokio::test]
    async fn a_registered_token_shaped_like_a_jwt_still_works() {
        let store = Arc::new(MemoryStore::new());
        let a = Authenticator::new([], Some("jwt-secret"), store.clone());
        let now = chrono::Utc::now();
        store
            .register_client(
                &crate::store::RegisteredClient {
                    id: uuid::Uuid::new_v4(),
                    client_id: "dot".into(),
                    auth_token: hash_token("a.b.c"),
                    room_id: None,
                    capabilities: vec![],
                    registered_at: now,
                    last_seen: None,
                    status: "Active".into(),
                    metadata: serde_json::json!({}),
                    record_created_at: now,
                },
                &[],
            )
            .await
            .unwrap();
        assert_eq!(
            a.authenticate("dot", "a.b.c").await.unwrap(),
            AuthMethod::Registered
        );
        let e = a.authenticate("dot", "x.y.z").await.unwrap_err();
        assert!(
            e.message.contains("JWT is malformed"),
            "the JWT's own error is reported: {e}"
        );
    }

    #[test]
    fn token_hashes_verify_and_are_salted() {
        let h1 = hash_token("tok");
        assert!(verify_token("tok", &h1));
        assert!(!verify_token("tok2", &h1));
        assert_ne!(h1, hash_token("tok"));
        assert!(!h1.contains("tok"));
        assert!(!verify_token("tok", "plain"));
    }
}
