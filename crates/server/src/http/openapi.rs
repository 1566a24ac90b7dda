//! The OpenAPI 3.1 document of the REST endpoints, built from the handlers' annotations by
//! utoipa and served as JSON at `GET /openapi.json`. No UI is bundled: any OpenAPI viewer
//! can read the document, and nothing is downloaded at build time.

use axum::{
    Router,
    body::Bytes,
    http::{HeaderValue, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::{admin, api, events, webrtc};
use crate::state::AppState;

/// Path of the document.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// Every route template the document describes: the REST routes of this router, and
/// `/health` and `/ready`, which the main router serves.
pub const ROUTES: [&str; 13] = [
    "/health",
    "/ready",
    "/api/stats",
    "/api/rooms",
    "/api/rooms/{id}",
    "/api/rooms/{id}/events",
    "/webrtc/config",
    "/webrtc/rooms/{id}/participants",
    "/api/admin/rooms",
    "/api/admin/rooms/{id}",
    "/api/admin/rooms/{id}/members/{client_id}",
    "/api/admin/clients/{client_id}/kick",
    "/api/admin/drain",
];

/// The document's root: title, version, the Bearer scheme, and `/health`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "signal-manager",
        description = "REST endpoints of the signal-manager WebRTC signaling server. \
            The WebSocket endpoints (/, /ws, /webrtc/ws/{room_id}) are described in docs/protocol.md; \
            Prometheus metrics are on their own listener (docs/http.md).",
        license(name = "MIT", identifier = "MIT")
    ),
    paths(health, ready),
    modifiers(&BearerScheme),
    tags(
        (name = "api", description = "Seed 002: server statistics and rooms"),
        (name = "webrtc", description = "Seed 004: ICE configuration and room participants"),
        (name = "health", description = "Liveness and store health"),
        (name = "admin", description = "For the admin role: every room, removing members, closing rooms, kicking and banning clients, draining a node"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme the endpoints refer to.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An HS256 JWT signed with auth.token_secret (sub = client id), \
                         or the token of an auth.api_keys entry",
                    ))
                    .build(),
            ),
        );
    }
}

/// `GET /health` (served by [`crate::ops::health`]; documented here).
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses(
        (status = 200, description = "Healthy: `{status: \"healthy\", timestamp, active_connections, registered_clients, webrtc_sessions, rooms, sessions}`; in a cluster also `cluster: {node_id, redis, nodes, rooms, sessions, webrtc_sessions}`, and `status: \"degraded\"` while Redis is unreachable", body = Object),
        (status = 503, description = "The store is unavailable: `{status: \"unhealthy\", timestamp, active_connections, error}`", body = Object),
    )
)]
#[allow(dead_code)] // Only its generated path item is used.
fn health() {}

/// `GET /ready` (served by [`crate::ops::ready`]; documented here).
#[utoipa::path(
    get,
    path = "/ready",
    tag = "health",
    responses(
        (status = 200, description = "This node should get new clients: `{status: \"ready\"}`", body = Object),
        (status = 503, description = "Draining, store unreachable, or (in a cluster) Redis unreachable: `{status: \"not_ready\", reason}`", body = Object),
    )
)]
#[allow(dead_code)] // Only its generated path item is used.
fn ready() {}

/// The REST routes and the document that describes them, served at [`OPENAPI_PATH`].
pub fn router() -> Router<AppState> {
    let (router, doc) = documented_routes().split_for_parts();
    let document = match doc.to_pretty_json() {
        Ok(json) => Some(Bytes::from(json)),
        Err(e) => {
            tracing::error!(error = %e, "could not serialize the OpenAPI document");
            None
        }
    };
    router.route(
        OPENAPI_PATH,
        get(move || {
            let document = document.clone();
            async move {
                match document {
                    Some(body) => (
                        [(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        )],
                        body,
                    )
                        .into_response(),
                    None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                }
            }
        }),
    )
}

/// The document, for tests and tools.
pub fn document() -> utoipa::openapi::OpenApi {
    documented_routes().into_openapi()
}

/// Each handler once: its route and its path item come from the same annotation.
fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(api::stats))
        .routes(routes!(api::rooms))
        .routes(routes!(api::room))
        .routes(routes!(events::room_events))
        .routes(routes!(webrtc::config))
        .routes(routes!(webrtc::participants))
        .routes(routes!(admin::rooms))
        .routes(routes!(admin::close_room))
        .routes(routes!(admin::remove_member))
        .routes(routes!(admin::kick))
        .routes(routes!(admin::drain))
}
