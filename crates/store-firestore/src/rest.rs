//! Firestore's REST API (`v1`): the handful of methods the store uses, and how their
//! failures read.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::auth::{Credentials, TokenCache};

/// How one call failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Firestore answered with an error: its canonical status (`ALREADY_EXISTS`,
    /// `NOT_FOUND`, `ABORTED`, …, or `HTTP_<code>` when the body was not Firestore's) and
    /// message.
    Status { status: String, message: String },
    /// The request did not complete. `sent` is false when the connection could not even
    /// be made, so the request cannot have been applied.
    Transport { sent: bool, message: String },
}

impl Failure {
    pub(crate) fn is(&self, status: &str) -> bool {
        matches!(self, Self::Status { status: s, .. } if s == status)
    }

    /// Whether Firestore itself is (for now) out of reach or overloaded (`ABORTED` here
    /// is contention that outlasted the store's own retries).
    pub(crate) fn is_unavailable(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Status { status, .. } => matches!(
                status.as_str(),
                "UNAVAILABLE"
                    | "ABORTED"
                    | "DEADLINE_EXCEEDED"
                    | "RESOURCE_EXHAUSTED"
                    | "UNAUTHENTICATED"
                    | "PERMISSION_DENIED"
                    | "HTTP_502"
                    | "HTTP_503"
                    | "HTTP_504"
            ),
        }
    }

    /// Whether a write certainly was not applied, so sending it again is safe.
    pub(crate) fn never_applied(&self) -> bool {
        matches!(self, Self::Transport { sent: false, .. })
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status { status, message } => write!(f, "{status}: {message}"),
            Self::Transport { message, .. } => f.write_str(message),
        }
    }
}

/// A Firestore database reached over HTTPS (or plain HTTP for the emulator).
pub(crate) struct Rest {
    http: reqwest::Client,
    /// `https://firestore.googleapis.com/v1/projects/P/databases/D/documents`.
    documents_url: String,
    /// `projects/P/databases/D/documents`: the prefix of every document name.
    documents: String,
    creds: Credentials,
    tokens: TokenCache,
    timeout: Duration,
}

impl Rest {
    pub(crate) fn new(
        base_url: &str,
        project: &str,
        database: &str,
        creds: Credentials,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let documents = format!("projects/{project}/databases/{database}/documents");
        Ok(Self {
            http,
            documents_url: format!("{}/v1/{documents}", base_url.trim_end_matches('/')),
            documents,
            creds,
            tokens: TokenCache::default(),
            timeout,
        })
    }

    pub(crate) fn credentials(&self) -> &Credentials {
        &self.creds
    }

    /// The full name of document `id` of `collection`.
    pub(crate) fn name(&self, collection: &str, id: &str) -> String {
        format!("{}/{collection}/{id}", self.documents)
    }

    /// `POST …/documents:{method}` with `body`.
    async fn call(&self, method: &str, body: &Value) -> Result<Value, Failure> {
        let bearer = self
            .tokens
            .bearer(
                &self.creds,
                &self.http,
                self.timeout,
                crate::auth::FIRESTORE_AUDIENCE,
            )
            .await
            .map_err(|e| Failure::Status {
                status: "UNAUTHENTICATED".into(),
                message: e.to_string(),
            })?;
        let resp = self
            .http
            .post(format!("{}:{method}", self.documents_url))
            .timeout(self.timeout)
            .header("authorization", bearer)
            .json(body)
            .send()
            .await
            .map_err(|e| Failure::Transport {
                sent: !e.is_connect(),
                message: format!("Firestore {method}: {}", without_url(&e)),
            })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| Failure::Transport {
            sent: true,
            message: format!(
                "Firestore {method}: reading the answer: {}",
                without_url(&e)
            ),
        })?;
        let value: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return value.ok_or_else(|| Failure::Status {
                status: "HTTP_200".into(),
                message: format!("Firestore {method}: the answer is not JSON"),
            });
        }
        let error = value.as_ref().and_then(|v| v.get("error"));
        Err(Failure::Status {
            status: error
                .and_then(|e| e.get("status"))
                .and_then(Value::as_str)
                .map_or_else(|| format!("HTTP_{}", status.as_u16()), str::to_owned),
            message: error
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .map_or_else(
                    || text.chars().take(200).collect(),
                    |m| m.chars().take(500).collect(),
                ),
        })
    }

    /// Reads documents by name; `None` for each one that does not exist.
    pub(crate) async fn get(
        &self,
        names: &[String],
        tx: Option<&str>,
    ) -> Result<Vec<Option<Value>>, Failure> {
        let mut body = json!({ "documents": names });
        if let Some(tx) = tx {
            body["transaction"] = json!(tx);
        }
        let answer = self.call("batchGet", &body).await?;
        let mut found: HashMap<String, Value> = HashMap::new();
        for item in answer.as_array().map(Vec::as_slice).unwrap_or_default() {
            if let Some(doc) = item.get("found")
                && let Some(name) = doc.get("name").and_then(Value::as_str)
            {
                found.insert(name.to_owned(), doc.clone());
            }
        }
        Ok(names.iter().map(|n| found.remove(n)).collect())
    }

    /// One document by name.
    pub(crate) async fn get_one(&self, name: String) -> Result<Option<Value>, Failure> {
        Ok(self.get(&[name], None).await?.pop().flatten())
    }

    /// Runs a structured query; the matching documents in the query's order.
    pub(crate) async fn query(
        &self,
        structured: Value,
        tx: Option<&str>,
    ) -> Result<Vec<Value>, Failure> {
        let mut body = json!({ "structuredQuery": structured });
        if let Some(tx) = tx {
            body["transaction"] = json!(tx);
        }
        let answer = self.call("runQuery", &body).await?;
        Ok(answer
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.get("document").cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Documents of `collection` whose `field` equals the string `value`.
    pub(crate) async fn where_eq(
        &self,
        collection: &str,
        field: &str,
        value: &str,
        tx: Option<&str>,
    ) -> Result<Vec<Value>, Failure> {
        self.query(
            json!({
                "from": [{ "collectionId": collection }],
                "where": { "fieldFilter": {
                    "field": { "fieldPath": field },
                    "op": "EQUAL",
                    "value": { "stringValue": value },
                }},
            }),
            tx,
        )
        .await
    }

    /// The number of documents in `collection`.
    pub(crate) async fn count(&self, collection: &str) -> Result<u64, Failure> {
        let answer = self
            .call(
                "runAggregationQuery",
                &json!({ "structuredAggregationQuery": {
                    "structuredQuery": { "from": [{ "collectionId": collection }] },
                    "aggregations": [{ "alias": "n", "count": {} }],
                }}),
            )
            .await?;
        let n = answer
            .get(0)
            .and_then(|r| r.pointer("/result/aggregateFields/n/integerValue"))
            .and_then(|v| {
                v.as_str()
                    .and_then(|s| s.parse().ok())
                    .or_else(|| v.as_u64())
            });
        n.ok_or_else(|| Failure::Status {
            status: "HTTP_200".into(),
            message: "Firestore runAggregationQuery: no count in the answer".into(),
        })
    }

    /// Begins a read-write transaction.
    pub(crate) async fn begin(&self) -> Result<String, Failure> {
        let answer = self
            .call(
                "beginTransaction",
                &json!({ "options": { "readWrite": {} } }),
            )
            .await?;
        answer
            .get("transaction")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| Failure::Status {
                status: "HTTP_200".into(),
                message: "Firestore beginTransaction: no transaction in the answer".into(),
            })
    }

    /// Abandons a transaction (best effort: it also ends by itself).
    pub(crate) async fn rollback(&self, tx: &str) {
        if let Err(e) = self.call("rollback", &json!({ "transaction": tx })).await {
            tracing::debug!(error = %e, "Firestore rollback failed");
        }
    }

    /// Commits `writes` atomically, in `tx` if given.
    pub(crate) async fn commit(&self, writes: Vec<Value>, tx: Option<&str>) -> Result<(), Failure> {
        let mut body = json!({ "writes": writes });
        if let Some(tx) = tx {
            body["transaction"] = json!(tx);
        }
        self.call("commit", &body).await.map(drop)
    }
}

/// A reqwest error's text without the URL (which holds nothing secret, but is long).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text
            .replace(&format!(" ({url})"), "")
            .replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

// ----- writes -----

/// A write creating document `name` with `fields`; fails with `ALREADY_EXISTS` if it
/// exists.
pub(crate) fn create(name: String, fields: serde_json::Map<String, Value>) -> Value {
    json!({
        "update": { "name": name, "fields": fields },
        "currentDocument": { "exists": false },
    })
}

/// A write setting only `fields` of an existing document; fails with `NOT_FOUND` if it
/// does not exist. With no fields, a check that it exists.
pub(crate) fn update(name: String, fields: serde_json::Map<String, Value>) -> Value {
    let paths: Vec<String> = fields.keys().cloned().collect();
    json!({
        "update": { "name": name, "fields": fields },
        "updateMask": { "fieldPaths": paths },
        "currentDocument": { "exists": true },
    })
}

/// [`update`], only if the document is still at `update_time` (else
/// `FAILED_PRECONDITION`).
pub(crate) fn update_if(
    name: String,
    fields: serde_json::Map<String, Value>,
    update_time: &str,
) -> Value {
    let mut w = update(name, fields);
    w["currentDocument"] = json!({ "updateTime": update_time });
    w
}

/// A write deleting document `name` (nothing happens if it does not exist).
pub(crate) fn delete(name: String) -> Value {
    json!({ "delete": name })
}

/// A write deleting document `name`; fails with `NOT_FOUND` if it does not exist.
pub(crate) fn delete_existing(name: String) -> Value {
    json!({ "delete": name, "currentDocument": { "exists": true } })
}
