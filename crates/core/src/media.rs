//! The media port: what happens to a room's media when its members come and go.
//!
//! In [`P2p`] mode (the default) peers send media to each other: the server only relays
//! their offers, answers and candidates, and the port has nothing to do. An SFU backend
//! (Cloudflare Realtime) opens a session per member, pushes the creator's tracks and
//! pulls them for joiners, behind the same trait. The hub calls it before it commits a
//! room or a membership to the store, so a media failure leaves nothing half-done.

use async_trait::async_trait;
use serde_json::Value;

use crate::ids::{ClientId, RoomId};

/// What the media backend made of a member's arrival, told to that member in its ACK.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaSession {
    /// The backend's session id for this member (Cloudflare's `sessionId`).
    pub session_id: Option<String>,
    /// The backend's SDP answer to the member's offer.
    pub answer_sdp: Option<String>,
    /// The backend's SDP offer the member must answer (a joiner pulling tracks).
    pub offer_sdp: Option<String>,
    /// Backend-specific connection details, passed to the client as they are.
    pub connection_info: Option<Value>,
}

/// The id the media backend's signals carry as their sender (`from_client_id`), and that
/// a member may name as a signal's target instead of leaving the target out.
pub const SFU_PEER: &str = "sfu";

/// What the media backend asks the hub to tell members: offers they must answer (with a
/// signal to the room, or to [`SFU_PEER`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaUpdate {
    /// The backend's answer to the caller's offer.
    pub answer_sdp: Option<String>,
    /// Offers for members (the caller included), each to be answered.
    pub offers: Vec<(ClientId, String)>,
}

/// A media backend that cannot serve now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// Unreachable or failing: retry later (503).
    #[error("media backend unavailable: {0}")]
    Unavailable(String),
    /// It refused what the client sent (an SDP it cannot use): the client's fault (400).
    #[error("media backend refused the request: {0}")]
    Refused(String),
    /// It answered with an error that is not the client's fault (502); the message names
    /// the backend's error code.
    #[error("media backend failed: {0}")]
    Failed(String),
    /// It did not answer in time (504).
    #[error("media backend timed out: {0}")]
    Timeout(String),
}

/// The media backend of rooms.
#[async_trait]
pub trait Media: Send + Sync + 'static {
    /// `p2p`, `cloudflare`, ...: for logs and `/health`.
    fn name(&self) -> &'static str;

    /// A room is being created by `creator`, with its offer if it sent one.
    async fn room_created(
        &self,
        room: &RoomId,
        creator: &ClientId,
        offer_sdp: Option<&str>,
    ) -> Result<MediaSession, MediaError>;

    /// `client` is joining `room`.
    async fn member_joined(
        &self,
        room: &RoomId,
        client: &ClientId,
    ) -> Result<MediaSession, MediaError>;

    /// `client` is in `room` now (after [`member_joined`](Self::member_joined) and the
    /// store): offers for what it missed meanwhile.
    async fn member_admitted(&self, room: &RoomId, client: &ClientId) -> MediaUpdate {
        let _ = (room, client);
        MediaUpdate::default()
    }

    /// `client` left `room` (its tracks end). Called on every node of a cluster: on the
    /// member's own node, and on each node holding other members of the room (which stop
    /// pulling its tracks).
    async fn member_left(&self, room: &RoomId, client: &ClientId);

    /// What `client` published in `room`, for members on other nodes (their node hands it
    /// to [`remote_published`](Self::remote_published)); `None` if nothing.
    fn published(&self, room: &RoomId, client: &ClientId) -> Option<Value> {
        let _ = (room, client);
        None
    }

    /// `publisher`, a member on another node, published `tracks` (what
    /// [`published`](Self::published) said there): offers for this node's members that
    /// can take them now. Telling a backend twice of the same tracks changes nothing.
    async fn remote_published(
        &self,
        room: &RoomId,
        publisher: &ClientId,
        tracks: &Value,
    ) -> Vec<(ClientId, String)> {
        let _ = (room, publisher, tracks);
        Vec::new()
    }

    /// `room` ended (every session of it ends).
    async fn room_ended(&self, room: &RoomId);

    /// Whether signals to a room without a target (or to [`SFU_PEER`]) are for this
    /// backend rather than for the room's other members.
    fn takes_room_signals(&self) -> bool {
        false
    }

    /// A member's offer to the backend: it publishes the offer's new tracks. The answer
    /// goes back to the member; every other member gets an offer for them.
    async fn offer(
        &self,
        room: &RoomId,
        client: &ClientId,
        sdp: &str,
    ) -> Result<MediaUpdate, MediaError> {
        let _ = (room, client, sdp);
        Err(peer_to_peer())
    }

    /// A member's answer to an offer the backend made it; may bring the next offer.
    async fn answer(
        &self,
        room: &RoomId,
        client: &ClientId,
        sdp: &str,
    ) -> Result<MediaUpdate, MediaError> {
        let _ = (room, client, sdp);
        Err(peer_to_peer())
    }
}

/// What a backend without room signals says to one.
fn peer_to_peer() -> MediaError {
    MediaError::Refused("this room's media is peer-to-peer: name a target peer".into())
}

/// Peer-to-peer media: the peers carry it; nothing to set up.
#[derive(Debug, Clone, Copy, Default)]
pub struct P2p;

#[async_trait]
impl Media for P2p {
    fn name(&self) -> &'static str {
        "p2p"
    }

    async fn room_created(
        &self,
        _room: &RoomId,
        _creator: &ClientId,
        _offer_sdp: Option<&str>,
    ) -> Result<MediaSession, MediaError> {
        Ok(MediaSession::default())
    }

    async fn member_joined(
        &self,
        _room: &RoomId,
        _client: &ClientId,
    ) -> Result<MediaSession, MediaError> {
        Ok(MediaSession::default())
    }

    async fn member_left(&self, _room: &RoomId, _client: &ClientId) {}

    async fn room_ended(&self, _room: &RoomId) {}
}

/// The media contract every backend passes: a room's life, each call answered.
#[cfg(any(test, feature = "contract"))]
pub mod contract {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::Media;
    use crate::ids::{ClientId, RoomId};

    /// A room's life against `media`: created with an offer, joined, left, ended. An SFU
    /// is given `sfu_offer` (a real offer that sends a track) and must answer it with a
    /// session; P2P (`None`) sets nothing up.
    pub async fn run(media: &dyn Media, sfu_offer: Option<&str>) {
        assert!(!media.name().is_empty(), "a backend names itself");
        let room = RoomId::generate();
        let (alice, bob) = (
            ClientId::parse("client_id", "contract-alice").unwrap(),
            ClientId::parse("client_id", "contract-bob").unwrap(),
        );
        let answers_offers = sfu_offer.is_some();
        assert_eq!(
            media.takes_room_signals(),
            answers_offers,
            "an SFU takes the room's signals, P2P leaves them to the members"
        );
        let offer = sfu_offer.unwrap_or("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
        let created = media.room_created(&room, &alice, Some(offer)).await;
        match (&created, answers_offers) {
            (Ok(s), true) => assert!(
                s.session_id.is_some() && s.answer_sdp.is_some(),
                "an SFU answers the creator's offer with a session: {s:?}"
            ),
            (Ok(s), false) => assert_eq!(s, &Default::default(), "P2P sets nothing up"),
            (Err(e), _) => panic!("room_created failed: {e}"),
        }
        let joined = media.member_joined(&room, &bob).await.unwrap();
        if answers_offers {
            assert!(
                joined.session_id.is_some() && joined.session_id != created.unwrap().session_id,
                "a joiner gets its own session"
            );
            assert!(
                joined.offer_sdp.is_some(),
                "a joiner is offered the published tracks"
            );
        }
        let _ = media.member_admitted(&room, &bob).await;
        media.member_left(&room, &bob).await;
        media.room_ended(&room).await;
    }

    /// A room across two nodes, `a` and `b` (two instances of one backend): a joiner on
    /// `b` is offered what the creator published on `a`, told once however often `b`
    /// hears of it, and `b` lets go of the creator's tracks when it leaves.
    pub async fn run_across_nodes(a: &dyn Media, b: &dyn Media, sfu_offer: Option<&str>) {
        let room = RoomId::generate();
        let (alice, bob) = (
            ClientId::parse("client_id", "contract-alice").unwrap(),
            ClientId::parse("client_id", "contract-bob").unwrap(),
        );
        let offer = sfu_offer.unwrap_or("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
        a.room_created(&room, &alice, Some(offer)).await.unwrap();
        let published = a.published(&room, &alice);
        assert_eq!(
            published.is_some(),
            sfu_offer.is_some(),
            "an SFU says what a member published, P2P has nothing to say: {published:?}"
        );
        assert_eq!(a.published(&room, &bob), None, "not a member");
        if let Some(tracks) = &published {
            assert!(
                b.remote_published(&room, &alice, tracks).await.is_empty(),
                "no member on b yet: no offer"
            );
            let joined = b.member_joined(&room, &bob).await.unwrap();
            assert!(
                joined.offer_sdp.is_some(),
                "a joiner on b is offered what was published on a: {joined:?}"
            );
            assert!(
                b.remote_published(&room, &alice, tracks).await.is_empty(),
                "the same tracks told again: no second offer"
            );
            let _ = b.member_admitted(&room, &bob).await;
        }
        // The creator leaves on a; b hears of it and stops pulling its tracks.
        a.member_left(&room, &alice).await;
        b.member_left(&room, &alice).await;
        assert_eq!(b.published(&room, &alice), None, "its tracks are gone");
        b.member_left(&room, &bob).await;
        a.room_ended(&room).await;
        b.room_ended(&room).await;
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn p2p_keeps_the_contract() {
        super::contract::run(&super::P2p, None).await;
        super::contract::run_across_nodes(&super::P2p, &super::P2p, None).await;
    }
}
