//! REST endpoints beside the WebSocket ones: seed 002's `/api/stats` and `/api/rooms`,
//! seed 004's `/webrtc/config` and `/webrtc/rooms/{id}/participants`, and the OpenAPI
//! document of all of them at `/openapi.json`.
//!
//! Every REST endpoint takes the same credential as the WebSocket dialects, an
//! `Authorization: Bearer` JWT or API-key token ([`Caller`]); only with
//! `auth.allow_anonymous` (development mode) may a request come without one. Errors are
//! `{"error": "..."}` with the HTTP status that fits ([`ApiError`]).

pub mod admin;
pub mod api;
pub mod events;
pub mod openapi;
pub mod turn;
pub mod webrtc;

use std::time::Instant;

use axum::{
    Json, Router,
    extract::{FromRequestParts, MatchedPath, Request},
    http::{HeaderValue, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use signal_core::{CoreError, ErrorCode};
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::ToSchema;

use crate::{config::SecurityConfig, state::AppState};

/// Routes of the REST API, with their OpenAPI document at `/openapi.json`.
pub fn router(security: &SecurityConfig) -> Router<AppState> {
    openapi::router()
        .layer(middleware::from_fn(count_request))
        .layer(cors(security))
}

/// CORS for the REST API, so a page served from another origin can fetch
/// `/webrtc/config` with its Bearer token: the origins of `security.allowed_origins`
/// (any with `"*"`), `GET` only, the `Authorization` header allowed.
fn cors(security: &SecurityConfig) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([axum::http::Method::GET])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
        ])
        .max_age(std::time::Duration::from_secs(600));
    if security.allowed_origins.iter().any(|o| o == "*") {
        layer.allow_origin(AllowOrigin::any())
    } else {
        layer.allow_origin(AllowOrigin::list(
            security
                .allowed_origins
                .iter()
                .filter_map(|o| axum::http::HeaderValue::from_str(o).ok()),
        ))
    }
}

/// The body of every REST error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    #[schema(example = "room 'lobby' not found")]
    pub error: String,
}

/// A REST error: a status and a message that is safe to show (internals are logged, never
/// sent).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Message for the client.
    pub message: String,
}

// === impl ApiError ===

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 401: the request needs a valid Bearer token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 500 with a generic message; `context` and `detail` go to the log only.
    pub fn internal(context: &str, detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "{context}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let status = match e.code() {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
        };
        Self::new(status, e.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: tell the client which scheme to use.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"signal-manager\""),
            );
        }
        response
    }
}

/// Who is calling a REST endpoint: the client a Bearer token belongs to, or an anonymous
/// caller where `auth.allow_anonymous` admits one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The client id (a JWT's `sub`, an API key's id), or `"anonymous"`.
    pub client_id: String,
    /// A JWT's `name` claim.
    pub name: Option<String>,
    /// Admitted without a token.
    pub anonymous: bool,
    /// What its credential allows.
    pub grants: signal_core::auth::Grants,
}

impl Caller {
    /// Whether it may see `room`'s members and their endpoints: an admin, or a member.
    pub fn sees_room(&self, room: &signal_core::hub::RoomInfo) -> bool {
        self.grants.admin || self.is_member(room)
    }

    /// Whether it is a member of `room`.
    pub fn is_member(&self, room: &signal_core::hub::RoomInfo) -> bool {
        !self.anonymous
            && room
                .participants
                .iter()
                .any(|p| p.client_id.as_str() == self.client_id)
    }
}

/// The client id an anonymous caller gets (also the user part of its TURN username).
pub const ANONYMOUS: &str = "anonymous";

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let refused = |e: ApiError, parts: &Parts| {
            let peer = parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0);
            crate::oplog::refused_http(peer, parts.uri.path(), &e.message);
            e
        };
        Self::identify(parts, state)
            .await
            .map_err(|e| refused(e, parts))
    }
}

impl Caller {
    async fn identify(parts: &Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            if state.config.auth.allow_anonymous {
                return Ok(Caller {
                    client_id: ANONYMOUS.to_owned(),
                    name: None,
                    anonymous: true,
                    grants: Default::default(),
                });
            }
            return Err(ApiError::unauthorized(
                "missing credentials: send 'Authorization: Bearer <JWT or API key token>'",
            ));
        };
        // A token that is present but wrong is refused even where anonymous access is
        // allowed: a client that meant to authenticate should learn that it failed.
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "malformed Authorization header: expected 'Bearer <JWT or API key token>'",
                )
            })?;
        let identity = state.hub.auth().identify(token, None).await?;
        Ok(Caller {
            client_id: identity.client_id,
            name: identity.name,
            anonymous: false,
            grants: identity.grants,
        })
    }
}

/// Counts REST requests by route template and status (`signal_http_requests_total`) and
/// times them (`signal_http_request_duration_seconds`). Route templates (`/api/rooms/{id}`)
/// are a closed set; the ids in a request's path never become labels.
async fn count_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| route_label(p.as_str()))
        .unwrap_or("unmatched");
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::counter!(
        "signal_http_requests_total",
        "route" => route,
        "status" => status_label(response.status()),
    )
    .increment(1);
    metrics::histogram!("signal_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The `'static` label of a route template of this router.
fn route_label(template: &str) -> &'static str {
    openapi::ROUTES
        .iter()
        .copied()
        .chain([openapi::OPENAPI_PATH])
        .find(|r| *r == template)
        .unwrap_or("unmatched")
}

/// The status codes REST handlers answer with, as labels; anything else is `other`.
fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}
