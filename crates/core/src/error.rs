//! Errors a client can cause or be told about, with their stable wire codes. Dialects map
//! a [`CoreError`] to their own error shape in one place each.

use serde_json::{Map, Value};

use crate::store::StoreError;

/// The closed set of error codes (HTTP-style, as the binary protocol sends them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 400: bad frame, payload or field.
    BadRequest,
    /// 401: bad credentials, or not registered.
    Unauthorized,
    /// 403: not allowed (not a member, room full, another client's id).
    Forbidden,
    /// 404: room or target not found.
    NotFound,
    /// 409: already registered, already in room, id taken, session replaced.
    Conflict,
    /// 413: too large.
    TooLarge,
    /// 429: rate limited.
    RateLimited,
    /// 500: internal error.
    Internal,
    /// 503: database or media backend unavailable.
    Unavailable,
}

impl ErrorCode {
    /// The numeric code.
    pub fn as_u16(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::TooLarge => 413,
            Self::RateLimited => 429,
            Self::Internal => 500,
            Self::Unavailable => 503,
        }
    }

    /// A label for metrics (`"400"`, ...), from a closed set.
    pub fn label(self) -> &'static str {
        match self {
            Self::BadRequest => "400",
            Self::Unauthorized => "401",
            Self::Forbidden => "403",
            Self::NotFound => "404",
            Self::Conflict => "409",
            Self::TooLarge => "413",
            Self::RateLimited => "429",
            Self::Internal => "500",
            Self::Unavailable => "503",
        }
    }
}

/// An error to report to a client: a code, a precise message and structured details.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct CoreError {
    /// Stable code.
    pub code: ErrorCode,
    /// What was wrong, for a person. Never contains secrets or internals.
    pub message: String,
    /// Extra keys for the client (`target_client_id`, `room_id`, ...).
    pub details: Map<String, Value>,
}

impl CoreError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Map::new(),
        }
    }

    /// Adds a detail.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// 400.
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, m)
    }
    /// 401.
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, m)
    }
    /// 403.
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, m)
    }
    /// 404.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, m)
    }
    /// 409.
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, m)
    }

    /// Maps a store failure: the client sees 503 or 500 and a generic message; the cause
    /// is logged here, with context, and never sent.
    pub fn from_store(context: &str, e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Self::conflict(m),
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "{context}: database unavailable");
                Self::new(ErrorCode::Unavailable, "Database unavailable, retry later")
            }
            StoreError::Internal(m) => {
                tracing::error!(error = %m, "{context}: database error");
                Self::new(ErrorCode::Internal, "Internal server error")
            }
        }
    }
}
