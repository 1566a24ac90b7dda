//! Prometheus metrics: the process-wide recorder and the catalogue of what is measured.
//! The listener that serves them is the `ops` module.
//!
//! Call sites across the workspace use the `metrics` macros with the names below; the
//! recorder is installed once per process ([`recorder`]), so a second server started in
//! the same process (tests do this) shares it. Labels come only from closed sets (wire
//! formats, message types, error codes, route templates), never from room or client ids.
//! Gauges that mirror state held elsewhere (registered clients, rooms, members) are
//! refreshed on each scrape.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram of the time from the hub accepting a signal to the target's connection
/// taking it from its queue to write it to the socket, labelled by `kind`.
pub const RELAY_LATENCY: &str = "signal_relay_latency_seconds";

/// Buckets of [`RELAY_LATENCY`], in seconds: 50 µs to 2.5 s.
pub const RELAY_LATENCY_BUCKETS: [f64; 15] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// Buckets of `signal_http_request_duration_seconds`: 1 ms to 5 s.
pub const HTTP_DURATION_BUCKETS: [f64; 10] =
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Handles of the metrics recorded for every message, registered once per server.
///
/// A `metrics::counter!` call with labels looks its series up in the recorder's registry
/// each time; on the relay path that lookup cost as much as the relay itself. These
/// handles are registered when the server starts (after the recorder is installed) and
/// indexed by closed sets.
pub(crate) struct HotMetrics {
    /// `signal_ws_messages_in_total` by endpoint (see [`endpoint_index`](Self::endpoint_index)).
    pub(crate) ws_in: [metrics::Counter; 3],
    /// `signal_ws_messages_out_total` by endpoint.
    pub(crate) ws_out: [metrics::Counter; 3],
    /// `signal_events_out_total` by event (see [`event_index`](Self::event_index)).
    pub(crate) events_out: [metrics::Counter; 7],
    /// [`RELAY_LATENCY`] by signal kind.
    pub(crate) relay_latency: [metrics::Histogram; 3],
    /// `signal_frames_in_total` by binary message type byte (unknown bytes: a no-op).
    pub(crate) frames_in: Vec<metrics::Counter>,
}

const ENDPOINTS: [&str; 3] = ["binary", "ws", "room_path"];
const EVENTS: [&str; 7] = [
    "peer_joined",
    "peer_left",
    "room_closed",
    "offer",
    "answer",
    "ice_candidate",
    "peer_reconnecting",
];

impl HotMetrics {
    /// Registers every series with the installed recorder (no-ops without one).
    pub(crate) fn new() -> Self {
        Self {
            ws_in: ENDPOINTS
                .map(|e| metrics::counter!("signal_ws_messages_in_total", "endpoint" => e)),
            ws_out: ENDPOINTS
                .map(|e| metrics::counter!("signal_ws_messages_out_total", "endpoint" => e)),
            events_out: EVENTS.map(|e| metrics::counter!("signal_events_out_total", "event" => e)),
            relay_latency: [EVENTS[3], EVENTS[4], EVENTS[5]]
                .map(|k| metrics::histogram!(RELAY_LATENCY, "kind" => k)),
            frames_in: (0..=u8::MAX)
                .map(|b| match signal_protocol::MessageType::from_u8(b) {
                    Some(t) => metrics::counter!("signal_frames_in_total", "type" => t.name()),
                    None => metrics::Counter::noop(),
                })
                .collect(),
        }
    }

    /// Index of an endpoint label (`binary`, `ws`, `room_path`).
    pub(crate) fn endpoint_index(label: &str) -> usize {
        ENDPOINTS.iter().position(|e| *e == label).unwrap_or(0)
    }

    /// Index of a signal kind in [`relay_latency`](Self::relay_latency).
    pub(crate) fn kind_index(kind: signal_core::hub::SignalKind) -> usize {
        use signal_core::hub::SignalKind;
        match kind {
            SignalKind::Offer => 0,
            SignalKind::Answer => 1,
            SignalKind::IceCandidate => 2,
        }
    }

    /// Index of an event in [`events_out`](Self::events_out).
    pub(crate) fn event_index(event: &signal_core::hub::Event) -> usize {
        use signal_core::hub::Event;
        match event {
            Event::PeerJoined { .. } => 0,
            Event::PeerLeft { .. } => 1,
            Event::RoomClosed { .. } => 2,
            Event::Signal(s) => 3 + Self::kind_index(s.kind),
            // Never sent to a connection (it stays between nodes).
            Event::PeerReconnecting { .. }
            | Event::MediaPublished { .. }
            | Event::CredentialExpiring { .. } => 6,
        }
    }
}

/// Buckets of the negotiation timings (seconds): a peer's answer or first candidate
/// takes from tens of milliseconds to the offer's timeout.
const NEGOTIATION_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0,
];

/// The recorder could not be installed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot install the Prometheus recorder: {0}")]
pub struct RecorderError(String);

static RECORDER: OnceLock<Result<PrometheusHandle, RecorderError>> = OnceLock::new();

/// The process-wide Prometheus recorder, installed (and the metrics described) on the
/// first call; later calls return the same handle. Fails if another global recorder was
/// installed first.
pub fn recorder() -> Result<PrometheusHandle, RecorderError> {
    RECORDER
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(RELAY_LATENCY.into()), &RELAY_LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("signal_http_request_duration_seconds".into()),
                        &HTTP_DURATION_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("signal_offer_answer_seconds".into()),
                        &NEGOTIATION_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("signal_join_first_candidate_seconds".into()),
                        &NEGOTIATION_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("signal_cluster_batch_size".into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                    )
                })
                .and_then(|b| b.install_recorder())
                .map_err(|e| RecorderError(e.to_string()))?;
            describe();
            register_zeroes();
            Ok(handle)
        })
        .clone()
}

/// Series of closed label sets that exist from the start at zero, so a dashboard or an
/// alert on `rate()` sees them before the first event.
fn register_zeroes() {
    for wire in [
        "binary_json",
        "binary_cbor",
        "altair",
        "simple",
        "room_path",
    ] {
        metrics::gauge!("signal_sessions", "wire" => wire).increment(0.0);
    }
    for kind in ["offer", "answer", "ice_candidate"] {
        metrics::counter!("signal_relayed_total", "kind" => kind).increment(0);
    }
    for code in [
        "400", "401", "403", "404", "409", "413", "429", "500", "503",
    ] {
        metrics::counter!("signal_errors_total", "code" => code).increment(0);
    }
    for endpoint in ["binary", "ws", "room_path"] {
        metrics::gauge!("signal_connections", "endpoint" => endpoint).increment(0.0);
    }
    metrics::counter!("signal_slow_consumer_disconnects_total").increment(0);
    metrics::counter!("signal_rooms_created_total").increment(0);
    metrics::counter!("signal_rooms_terminated_total").increment(0);
}

/// Registers the name, unit and help text of every metric the server emits.
fn describe() {
    describe_histogram!(
        "signal_offer_answer_seconds",
        "Time from an offer to its answer, by the offerer's wire format"
    );
    describe_histogram!(
        "signal_join_first_candidate_seconds",
        "Time from joining a room to the first ICE candidate sent, by wire format"
    );
    describe_counter!(
        "signal_offers_unanswered_total",
        "Offers with no answer within 30 s, or none before the offerer's session ended, by the offerer's wire format"
    );
    describe_gauge!(
        "signal_connections",
        "Open WebSocket connections, by endpoint"
    );
    describe_counter!(
        "signal_connections_refused_total",
        "WebSocket upgrades refused, by reason (max_connections, per_ip)"
    );
    describe_gauge!(
        "signal_sessions",
        "Authenticated sessions, by wire format (binary_json, binary_cbor, altair, simple, room_path)"
    );
    describe_gauge!(
        "signal_registered_clients",
        "Clients registered in the store (refreshed on scrape)"
    );
    describe_gauge!(
        "signal_store_up",
        "1 if the store answered the last scrape's query, else 0"
    );
    describe_gauge!("signal_rooms", "Active rooms (refreshed on scrape)");
    describe_gauge!(
        "signal_room_members",
        "Room memberships summed over rooms (refreshed on scrape)"
    );
    describe_counter!("signal_rooms_created_total", "Rooms created");
    describe_counter!("signal_rooms_terminated_total", "Rooms terminated");
    describe_counter!(
        "signal_frames_in_total",
        "Binary frames received, by message type"
    );
    describe_counter!(
        "signal_frames_out_total",
        "Binary responses sent, by message type"
    );
    describe_counter!(
        "signal_ws_messages_in_total",
        "WebSocket data messages received, by endpoint (binary, ws, room_path)"
    );
    describe_counter!(
        "signal_ws_messages_out_total",
        "WebSocket messages written, by endpoint (binary, ws, room_path)"
    );
    describe_counter!(
        "signal_events_out_total",
        "Hub events written to connections, by event (peer_joined, peer_left, room_closed, offer, answer, ice_candidate)"
    );
    describe_counter!(
        "signal_errors_total",
        "Errors sent to clients, by status code"
    );
    describe_counter!(
        "signal_relayed_total",
        "Signals relayed, by kind (offer, answer, ice_candidate)"
    );
    describe_histogram!(
        RELAY_LATENCY,
        Unit::Seconds,
        "Time from the hub accepting a signal to the target's connection taking it from its queue to write it, by kind"
    );
    describe_counter!(
        "signal_slow_consumer_disconnects_total",
        "Connections closed because their outbound queue was full"
    );
    describe_counter!(
        "signal_http_requests_total",
        "REST requests, by route template and status"
    );
    describe_histogram!(
        "signal_http_request_duration_seconds",
        Unit::Seconds,
        "REST request handling time, by route template"
    );
}
