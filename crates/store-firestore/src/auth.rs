//! Google credentials: where the bearer token of each request comes from.
//!
//! - **Emulator**: no credentials; the conventional `Bearer owner`.
//! - **Service account** (a JSON key file from `[firestore] credentials_path` or
//!   `GOOGLE_APPLICATION_CREDENTIALS`): a self-signed JWT (RS256, audience the API's
//!   `https://SERVICE.googleapis.com/`), which Google accepts in place of an OAuth access
//!   token, so no token endpoint is called. Renewed ten minutes before its hour ends.
//! - **Authorized user** (`gcloud auth application-default login`'s file): its refresh
//!   token is exchanged at Google's token endpoint.
//! - **Metadata server** (Cloud Run, GKE, Compute Engine: no file found): the instance's
//!   service account token from `GCE_METADATA_HOST` or `metadata.google.internal`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use signal_core::store::StoreError;

/// The audience of a self-signed service-account JWT for Firestore.
pub const FIRESTORE_AUDIENCE: &str = "https://firestore.googleapis.com/";
const TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
const LIFETIME: Duration = Duration::from_secs(3600);
const RENEW_BEFORE: Duration = Duration::from_secs(600);

/// Where tokens come from.
pub enum Credentials {
    /// The emulator: `Bearer owner`.
    Emulator,
    /// A service account key.
    ServiceAccount {
        /// The account's email (the JWT's issuer and subject).
        email: String,
        /// The key's id (the JWT's `kid`).
        key_id: Option<String>,
        /// The private key.
        key: Box<EncodingKey>,
    },
    /// A user's refresh token (application default credentials of `gcloud`).
    AuthorizedUser {
        /// The OAuth client.
        client_id: String,
        /// The OAuth client's secret.
        client_secret: String,
        /// The refresh token.
        refresh_token: String,
    },
    /// The metadata server of the instance the server runs on.
    Metadata {
        /// `HOST[:PORT]` of the metadata server.
        host: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

impl Credentials {
    /// The credentials of the standard Google environment: `explicit` (the configured
    /// file), else `GOOGLE_APPLICATION_CREDENTIALS`, else gcloud's application default
    /// credentials file, else the metadata server.
    pub fn discover(explicit: Option<&Path>) -> Result<Self, StoreError> {
        if let Some(path) = explicit {
            return Self::from_file(path);
        }
        if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
            return Self::from_file(Path::new(&path));
        }
        if let Some(home) = std::env::var_os("HOME") {
            let adc: PathBuf = [
                home.as_os_str(),
                ".config/gcloud/application_default_credentials.json".as_ref(),
            ]
            .iter()
            .collect();
            if adc.is_file() {
                return Self::from_file(&adc);
            }
        }
        let host = std::env::var("GCE_METADATA_HOST")
            .unwrap_or_else(|_| "metadata.google.internal".to_owned());
        Ok(Self::Metadata { host })
    }

    /// Reads a credentials file (service account or authorized user).
    pub fn from_file(path: &Path) -> Result<Self, StoreError> {
        let bad = |why: String| {
            StoreError::Internal(format!("credentials file {}: {why}", path.display()))
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        match file.kind.as_str() {
            "service_account" => {
                let (Some(email), Some(pem)) = (file.client_email, file.private_key) else {
                    return Err(bad("needs client_email and private_key".into()));
                };
                let key = EncodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|e| bad(format!("private_key: {e}")))?;
                Ok(Self::ServiceAccount {
                    email,
                    key_id: file.private_key_id,
                    key: Box::new(key),
                })
            }
            "authorized_user" => {
                let (Some(client_id), Some(client_secret), Some(refresh_token)) =
                    (file.client_id, file.client_secret, file.refresh_token)
                else {
                    return Err(bad(
                        "needs client_id, client_secret and refresh_token".into()
                    ));
                };
                Ok(Self::AuthorizedUser {
                    client_id,
                    client_secret,
                    refresh_token,
                })
            }
            other => Err(bad(format!(
                "type {other:?} is not supported (service_account or authorized_user)"
            ))),
        }
    }

    /// For logs: which kind of credentials (never the secret).
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Emulator => "emulator (no credentials)",
            Self::ServiceAccount { .. } => "service account key",
            Self::AuthorizedUser { .. } => "authorized user (application default credentials)",
            Self::Metadata { .. } => "metadata server",
        }
    }

    /// A fresh token and how long it may be used.
    pub async fn fetch(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        audience: &str,
    ) -> Result<(String, Duration), StoreError> {
        let unavailable = |what: &str, e: String| {
            StoreError::Unavailable(format!("cannot obtain a Google token from {what}: {e}"))
        };
        match self {
            Self::Emulator => Ok(("owner".to_owned(), Duration::from_secs(u64::MAX / 4))),
            Self::ServiceAccount { email, key_id, key } => {
                let jwt = self_signed_jwt(email, key_id.as_deref(), key, audience)?;
                Ok((jwt, LIFETIME))
            }
            Self::AuthorizedUser {
                client_id,
                client_secret,
                refresh_token,
            } => {
                let body = format!(
                    "grant_type=refresh_token&client_id={}&client_secret={}&refresh_token={}",
                    form_encode(client_id),
                    form_encode(client_secret),
                    form_encode(refresh_token)
                );
                let resp = http
                    .post(TOKEN_URL)
                    .timeout(timeout)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| unavailable("the token endpoint", e.to_string()))?;
                token_from(resp, "the token endpoint").await
            }
            Self::Metadata { host } => {
                let url = format!(
                    "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
                );
                let resp = http
                    .get(url)
                    .timeout(timeout)
                    .header("Metadata-Flavor", "Google")
                    .send()
                    .await
                    .map_err(|e| unavailable("the metadata server", e.to_string()))?;
                token_from(resp, "the metadata server").await
            }
        }
    }
}

async fn token_from(resp: reqwest::Response, what: &str) -> Result<(String, Duration), StoreError> {
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        return Err(StoreError::Unavailable(format!(
            "cannot obtain a Google token from {what}: HTTP {status}: {}",
            text.chars().take(200).collect::<String>()
        )));
    }
    let t: TokenResponse = resp
        .json()
        .await
        .map_err(|e| StoreError::Unavailable(format!("unreadable token from {what}: {e}")))?;
    Ok((
        t.access_token,
        Duration::from_secs(t.expires_in.unwrap_or(3600)),
    ))
}

/// A JWT signed by the service account's own key, for `audience`.
pub fn self_signed_jwt(
    email: &str,
    key_id: Option<&str>,
    key: &EncodingKey,
    audience: &str,
) -> Result<String, StoreError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = key_id.map(str::to_owned);
    let claims = Claims {
        iss: email,
        sub: email,
        aud: audience,
        iat: now,
        exp: now + LIFETIME.as_secs(),
    };
    jsonwebtoken::encode(&header, &claims, key)
        .map_err(|e| StoreError::Internal(format!("cannot sign a service account JWT: {e}")))
}

fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A cached token, renewed before it ends.
#[derive(Default)]
pub struct TokenCache {
    current: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl TokenCache {
    /// The `Authorization` header's value.
    pub async fn bearer(
        &self,
        creds: &Credentials,
        http: &reqwest::Client,
        timeout: Duration,
        audience: &str,
    ) -> Result<String, StoreError> {
        let mut current = self.current.lock().await;
        if let Some((token, renew_at)) = current.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(format!("Bearer {token}"));
        }
        let (token, lifetime) = creds.fetch(http, timeout, audience).await?;
        let renew_at = Instant::now()
            .checked_add(lifetime.saturating_sub(RENEW_BEFORE.min(lifetime / 2)))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        let header = format!("Bearer {token}");
        *current = Some((token, renew_at));
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    /// A service account file with a key made by `openssl` for this test.
    #[test]
    fn service_account_signs_a_jwt_google_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("key.pem");
        let status = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&key_path)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl must be installed to run this test");
        assert!(status.success());
        let pub_pem = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key_path)
            .output()
            .unwrap()
            .stdout;
        let pem = std::fs::read_to_string(&key_path).unwrap();
        let file = dir.path().join("sa.json");
        std::fs::write(
            &file,
            serde_json::json!({
                "type": "service_account",
                "project_id": "demo",
                "private_key_id": "kid-1",
                "private_key": pem,
                "client_email": "signal@demo.iam.gserviceaccount.com",
            })
            .to_string(),
        )
        .unwrap();

        let creds = Credentials::from_file(&file).unwrap();
        assert_eq!(creds.describe(), "service account key");
        let Credentials::ServiceAccount { email, key_id, key } = &creds else {
            panic!("not a service account: {creds:?}");
        };
        let jwt = self_signed_jwt(email, key_id.as_deref(), key, FIRESTORE_AUDIENCE).unwrap();

        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), Some("kid-1"));
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&[FIRESTORE_AUDIENCE]);
        v.set_issuer(&["signal@demo.iam.gserviceaccount.com"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &jwt,
            &DecodingKey::from_rsa_pem(&pub_pem).unwrap(),
            &v,
        )
        .unwrap();
        assert_eq!(data.claims["sub"], "signal@demo.iam.gserviceaccount.com");
        let (iat, exp) = (
            data.claims["iat"].as_u64().unwrap(),
            data.claims["exp"].as_u64().unwrap(),
        );
        assert_eq!(exp - iat, 3600);
    }

    #[test]
    fn bad_credentials_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.json");
        std::fs::write(&file, r#"{"type":"external_account"}"#).unwrap();
        let err = Credentials::from_file(&file).unwrap_err().to_string();
        assert!(
            err.contains("x.json") && err.contains("external_account"),
            "{err}"
        );
        let err = Credentials::from_file(&dir.path().join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.json"), "{err}");
        std::fs::write(
            &file,
            r#"{"type":"service_account","client_email":"a@b","private_key":"nope"}"#,
        )
        .unwrap();
        let err = Credentials::from_file(&file).unwrap_err().to_string();
        assert!(err.contains("private_key"), "{err}");
    }
}
