//! The demo page at `/demo`: two browsers join a room through this server and open a
//! WebRTC connection (video and a chat data channel).
//!
//! The page is built from `clients/js/demo` into `crates/server/assets/demo/` and embedded
//! in the binary, so building the server never needs Node and the page always matches the
//! server it ships with. `npm run check-assets` in `clients/js` verifies the committed build.

use axum::{
    Router,
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::state::AppState;

/// One embedded file of the demo page.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../../clients/js/demo/index.html"),
    },
    Asset {
        name: "demo.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/demo/demo.js"),
    },
    Asset {
        name: "demo.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../../clients/js/demo/demo.css"),
    },
];

/// What the page may load and talk to: its own files, any signaling server the user types
/// in (`ws:`/`wss:`, and `http(s):` for its `/webrtc/config`), and camera streams.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; media-src 'self' blob: mediastream:; \
     connect-src 'self' ws: wss: http: https:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// Routes of the demo page: `/demo` (and `/demo/`) and `/demo/{file}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/demo", get(index))
        .route("/demo/", get(index))
        .route("/demo/{file}", get(file))
}

async fn index() -> Response {
    serve("index.html")
}

async fn file(Path(name): Path<String>) -> Response {
    serve(&name)
}

fn serve(name: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"))],
            "no such file in the demo page\n",
        )
            .into_response();
    };
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            // The page changes with the server binary: always revalidate.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        asset.body,
    )
        .into_response();
    if asset.name == "index.html" {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        response.headers_mut().insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_non_empty_and_the_page_links_the_others() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{} is empty", a.name);
        }
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(html.contains("/demo/demo.js"));
        assert!(html.contains("/demo/demo.css"));
    }

    #[test]
    fn unknown_files_are_404_and_known_ones_have_their_type() {
        assert_eq!(serve("nope.js").status(), StatusCode::NOT_FOUND);
        assert_eq!(serve("../Cargo.toml").status(), StatusCode::NOT_FOUND);
        let r = serve("demo.js");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        assert!(
            serve("index.html")
                .headers()
                .contains_key(header::CONTENT_SECURITY_POLICY)
        );
    }
}
