//! Errors a client can cause or be told about. Each is an [`ErrorKind`], fine-grained and
//! stable; every edge maps a kind, in one table of its own, to what its wire says (the
//! binary protocol's numeric code, the JSON dialects' symbolic name, a close code). No
//! edge looks at an error's message to decide anything.

use serde_json::{Map, Value};

use crate::store::StoreError;

/// The closed set of status classes (HTTP-style, as the binary protocol sends them).
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
    /// 502: the media backend answered with an error.
    BadGateway,
    /// 503: database or media backend unavailable.
    Unavailable,
    /// 504: the media backend did not answer in time.
    GatewayTimeout,
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
            Self::BadGateway => 502,
            Self::Unavailable => 503,
            Self::GatewayTimeout => 504,
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
            Self::BadGateway => "502",
            Self::Unavailable => "503",
            Self::GatewayTimeout => "504",
        }
    }
}

/// What went wrong, as precisely as an edge may need to tell it apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A malformed frame, payload or field.
    BadRequest,
    /// A client protocol version newer than the server's.
    UnsupportedVersion,
    /// Too large to take or to relay.
    TooLarge,
    /// Missing, invalid or expired credentials.
    Unauthenticated,
    /// A request before the session opened.
    NotConnected,
    /// Not allowed (another client's id, a role the client may not take).
    Forbidden,
    /// The client is not a member of the room it names.
    NotMember,
    /// Sender and target share no room (`routing.require_shared_room`).
    NoSharedRoom,
    /// The room has reached its member cap.
    RoomFull,
    /// No such room.
    RoomNotFound,
    /// The target peer is not connected (or not in the room named).
    PeerNotFound,
    /// No such registered client.
    ClientNotFound,
    /// The client id is registered already.
    AlreadyRegistered,
    /// The client is in the room already.
    AlreadyInRoom,
    /// A room with that id exists.
    RoomExists,
    /// A newer session of the same client replaced this one.
    SessionReplaced,
    /// A conflict the store reported that no finer kind names.
    Conflict,
    /// Over the message rate limit.
    RateLimited,
    /// A server-side failure; details are logged, never sent.
    Internal,
    /// The store or media backend cannot serve now; retry later.
    Unavailable,
    /// The media backend refused or failed a call (its error code is in the message).
    MediaFailed,
    /// The media backend did not answer in time.
    MediaTimeout,
    /// The server is draining.
    ShuttingDown,
}

impl ErrorKind {
    /// The status class (and the binary protocol's numeric code).
    pub fn code(self) -> ErrorCode {
        match self {
            Self::BadRequest | Self::UnsupportedVersion => ErrorCode::BadRequest,
            Self::TooLarge => ErrorCode::TooLarge,
            Self::Unauthenticated | Self::NotConnected => ErrorCode::Unauthorized,
            Self::Forbidden | Self::NotMember | Self::NoSharedRoom | Self::RoomFull => {
                ErrorCode::Forbidden
            }
            Self::RoomNotFound | Self::PeerNotFound | Self::ClientNotFound => ErrorCode::NotFound,
            Self::AlreadyRegistered
            | Self::AlreadyInRoom
            | Self::RoomExists
            | Self::SessionReplaced
            | Self::Conflict => ErrorCode::Conflict,
            Self::RateLimited => ErrorCode::RateLimited,
            Self::Internal => ErrorCode::Internal,
            Self::Unavailable | Self::ShuttingDown => ErrorCode::Unavailable,
            Self::MediaFailed => ErrorCode::BadGateway,
            Self::MediaTimeout => ErrorCode::GatewayTimeout,
        }
    }

    /// Whether the server, not the client, is at fault (the client may retry as is).
    pub fn is_server_side(self) -> bool {
        matches!(
            self,
            Self::Internal
                | Self::Unavailable
                | Self::ShuttingDown
                | Self::MediaFailed
                | Self::MediaTimeout
        )
    }
}

/// An error to report to a client: a code, a precise message and structured details.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct CoreError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// What was wrong, for a person. Never contains secrets or internals.
    pub message: String,
    /// Extra keys for the client (`target_client_id`, `room_id`, ...).
    pub details: Map<String, Value>,
}

impl CoreError {
    /// An error of a kind, with its message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            details: Map::new(),
        }
    }

    /// The status class.
    pub fn code(&self) -> ErrorCode {
        self.kind.code()
    }

    /// Adds a detail.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// [`ErrorKind::BadRequest`].
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, m)
    }
    /// [`ErrorKind::Unauthenticated`].
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, m)
    }
    /// [`ErrorKind::Forbidden`].
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, m)
    }
    /// [`ErrorKind::Internal`], with the generic message clients see.
    pub fn internal() -> Self {
        Self::new(ErrorKind::Internal, "Internal server error")
    }

    /// Maps a store failure: the client sees 503 or 500 and a generic message; the cause
    /// is logged here, with context, and never sent.
    pub fn from_store(context: &str, e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => Self::new(ErrorKind::Conflict, m),
            StoreError::Unavailable(m) => {
                tracing::warn!(error = %m, "{context}: database unavailable");
                Self::new(ErrorKind::Unavailable, "Database unavailable, retry later")
            }
            StoreError::NoRoom(m) => Self::new(ErrorKind::RoomNotFound, m),
            StoreError::Internal(m) => {
                tracing::error!(error = %m, "{context}: database error");
                Self::internal()
            }
        }
    }
}
