//! Rooms on Cloudflare's SFU: each member gets its own Cloudflare session, created right
//! before its first negotiation (an unused session expires). A member's offer publishes
//! its tracks (`tracks/new`, local); every other member pulls them (`tracks/new`, remote)
//! and answers the SFU's offer (`renegotiate`). A member with an offer outstanding gets
//! the next tracks once it has answered, so no session ever has two negotiations open.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::json;
use signal_core::{
    ids::{ClientId, RoomId},
    media::{Media, MediaError, MediaSession, MediaUpdate},
};

use crate::{
    api::{Api, SessionDescription, TrackObject},
    sdp,
};

/// A track published in a room.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Published {
    publisher: ClientId,
    session: String,
    track: String,
}

#[derive(Debug, Default)]
struct MemberState {
    /// Its Cloudflare session, once it negotiated.
    session: Option<String>,
    /// Mids of its own tracks it published.
    published: HashSet<String>,
    /// Tracks it pulls, with their mid on its session.
    pulled: HashMap<Published, String>,
    /// An SFU offer is outstanding: no change to its session until it answers.
    awaiting: bool,
    /// Its join is not complete: offers could not reach it yet.
    joining: bool,
}

#[derive(Debug, Default)]
struct RoomState {
    tracks: Vec<Published>,
    members: HashMap<ClientId, MemberState>,
}

/// The Cloudflare Realtime media backend.
#[derive(Debug)]
pub struct CloudflareSfu {
    api: Api,
    rooms: Mutex<HashMap<RoomId, RoomState>>,
}

impl CloudflareSfu {
    /// A backend over `api`.
    pub fn new(api: Api) -> Self {
        Self {
            api,
            rooms: Mutex::default(),
        }
    }

    fn connection_info(&self, room: &RoomId, session: &str) -> serde_json::Value {
        json!({ "session_id": session, "room_id": room.as_str(), "app_id": self.api.app_id() })
    }

    /// Runs `f` on `client`'s state in `room`, if it is a member.
    fn with_member<T>(
        &self,
        room: &RoomId,
        client: &ClientId,
        f: impl FnOnce(&mut MemberState) -> T,
    ) -> Option<T> {
        self.rooms
            .lock()
            .get_mut(room)
            .and_then(|r| r.members.get_mut(client))
            .map(f)
    }

    /// Offers `client` what the room published that it has not pulled, if it can take
    /// an offer now; a failure is logged (the member asks again by its next answer).
    async fn catch_up(&self, room: &RoomId, client: &ClientId) -> Option<(ClientId, String)> {
        let tracks = self.claim_missing(room, client)?;
        match self.pull(room, client, tracks).await {
            Ok((_, offer)) => Some((client.clone(), offer)),
            Err(e) => {
                tracing::warn!(room_id = %room, client_id = %client, error = %e, "could not offer a member the tracks published meanwhile");
                None
            }
        }
    }

    /// A new session for `client` (created now, recorded in its state).
    async fn open_session(&self, room: &RoomId, client: &ClientId) -> Result<String, MediaError> {
        let sid = self.api.new_session().await?;
        self.with_member(room, client, |m| m.session = Some(sid.clone()));
        Ok(sid)
    }

    /// Publishes the tracks `offer` sends that `client` has not published yet, on its
    /// session (opened if it has none); the SFU's answer.
    async fn publish(
        &self,
        room: &RoomId,
        client: &ClientId,
        offer: &str,
    ) -> Result<(String, String), MediaError> {
        sdp::check(offer).map_err(MediaError::Refused)?;
        let (session, published) = {
            let rooms = self.rooms.lock();
            let m = rooms
                .get(room)
                .and_then(|r| r.members.get(client))
                .ok_or_else(|| MediaError::Refused(format!("not a member of SFU room '{room}'")))?;
            (m.session.clone(), m.published.clone())
        };
        let new: Vec<sdp::SentTrack> = sdp::sent_tracks(offer)
            .into_iter()
            .filter(|t| !published.contains(&t.mid))
            .collect();
        if new.is_empty() {
            return Err(MediaError::Refused(
                "the offer sends no new audio or video track to publish".into(),
            ));
        }
        let session = match session {
            Some(s) => s,
            None => self.open_session(room, client).await?,
        };
        let tracks = new
            .iter()
            .map(|t| TrackObject {
                location: Some("local".into()),
                mid: Some(t.mid.clone()),
                track_name: Some(t.mid.clone()),
                ..TrackObject::default()
            })
            .collect();
        let r = {
            let _guard = self.api.lock(&session).await;
            self.api
                .tracks_new(&session, Some(SessionDescription::offer(offer)), tracks)
                .await?
        };
        let answer = match r.session_description {
            Some(d) if d.kind == "answer" => d.sdp,
            _ => {
                return Err(MediaError::Failed(
                    "Cloudflare tracks/new: no answer to the offer".into(),
                ));
            }
        };
        let failed: Vec<String> = r
            .tracks
            .iter()
            .filter_map(|t| {
                t.error_code
                    .as_ref()
                    .map(|c| format!("track {}: {c}", t.track_name.as_deref().unwrap_or("?")))
            })
            .collect();
        if !failed.is_empty() {
            return Err(MediaError::Failed(format!(
                "Cloudflare tracks/new: {}",
                failed.join(", ")
            )));
        }
        let mut rooms = self.rooms.lock();
        let Some(state) = rooms.get_mut(room) else {
            return Err(MediaError::Refused(format!("SFU room '{room}' ended")));
        };
        if let Some(m) = state.members.get_mut(client) {
            m.published.extend(new.iter().map(|t| t.mid.clone()));
        }
        state.tracks.extend(new.into_iter().map(|t| Published {
            publisher: client.clone(),
            session: session.clone(),
            track: t.mid,
        }));
        Ok((session, answer))
    }

    /// Claims `client` for a pull of the room's tracks it lacks: marks it busy and says
    /// which, or `None` if it is busy or lacks nothing.
    fn claim_missing(&self, room: &RoomId, client: &ClientId) -> Option<Vec<Published>> {
        let mut rooms = self.rooms.lock();
        let state = rooms.get_mut(room)?;
        let missing: Vec<Published> = {
            let m = state.members.get(client)?;
            if m.awaiting || m.joining {
                return None;
            }
            state
                .tracks
                .iter()
                .filter(|t| &t.publisher != client && !m.pulled.contains_key(t))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            return None;
        }
        if let Some(m) = state.members.get_mut(client) {
            m.awaiting = true;
        }
        Some(missing)
    }

    /// Pulls `tracks` into `client`'s session (opened if it has none): the SFU's offer.
    /// On failure the member is released (no offer outstanding) and the tracks stay
    /// missing.
    async fn pull(
        &self,
        room: &RoomId,
        client: &ClientId,
        tracks: Vec<Published>,
    ) -> Result<(String, String), MediaError> {
        let result = self.pull_inner(room, client, &tracks).await;
        let mut rooms = self.rooms.lock();
        if let Some(m) = rooms.get_mut(room).and_then(|r| r.members.get_mut(client)) {
            match &result {
                Ok((_, _, mids)) => m.pulled.extend(mids.iter().cloned()),
                Err(_) => m.awaiting = false,
            }
        }
        result.map(|(s, offer, _)| (s, offer))
    }

    async fn pull_inner(
        &self,
        room: &RoomId,
        client: &ClientId,
        tracks: &[Published],
    ) -> Result<(String, String, Vec<(Published, String)>), MediaError> {
        let session = {
            let rooms = self.rooms.lock();
            rooms
                .get(room)
                .and_then(|r| r.members.get(client))
                .and_then(|m| m.session.clone())
        };
        let session = match session {
            Some(s) => s,
            None => self.open_session(room, client).await?,
        };
        let request = tracks
            .iter()
            .map(|t| TrackObject {
                location: Some("remote".into()),
                session_id: Some(t.session.clone()),
                track_name: Some(t.track.clone()),
                ..TrackObject::default()
            })
            .collect();
        let r = {
            let _guard = self.api.lock(&session).await;
            self.api.tracks_new(&session, None, request).await?
        };
        let offer = match r.session_description {
            Some(d) if d.kind == "offer" => d.sdp,
            _ => {
                return Err(MediaError::Failed(
                    "Cloudflare tracks/new: no offer for the pulled tracks".into(),
                ));
            }
        };
        let mut mids = Vec::new();
        for (t, got) in tracks.iter().zip(&r.tracks) {
            match (&got.error_code, &got.mid) {
                (None, Some(mid)) => mids.push((t.clone(), mid.clone())),
                (code, _) => tracing::warn!(
                    room_id = %room,
                    client_id = %client,
                    track = %t.track,
                    error = code.as_deref().unwrap_or("no mid"),
                    "Cloudflare could not pull a track"
                ),
            }
        }
        if mids.is_empty() {
            return Err(MediaError::Failed(format!(
                "Cloudflare tracks/new: no track could be pulled ({})",
                r.tracks
                    .iter()
                    .filter_map(|t| t.error_code.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok((session, offer, mids))
    }

    /// Offers the room's new tracks to every member but `except` that can take them now.
    async fn offer_to_others(&self, room: &RoomId, except: &ClientId) -> Vec<(ClientId, String)> {
        let others: Vec<ClientId> = self
            .rooms
            .lock()
            .get(room)
            .map(|r| r.members.keys().filter(|c| *c != except).cloned().collect())
            .unwrap_or_default();
        let claims: Vec<(ClientId, Vec<Published>)> = others
            .into_iter()
            .filter_map(|c| self.claim_missing(room, &c).map(|t| (c, t)))
            .collect();
        let pulls = claims.into_iter().map(|(c, tracks)| async move {
            match self.pull(room, &c, tracks).await {
                Ok((_, offer)) => Some((c, offer)),
                Err(e) => {
                    tracing::warn!(room_id = %room, client_id = %c, error = %e, "could not offer new tracks to a member");
                    None
                }
            }
        });
        futures_util::future::join_all(pulls)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Closes `mids` on `session`, logging a failure (clean-up never fails the caller).
    async fn close_quietly(&self, session: &str, mids: Vec<String>) {
        if mids.is_empty() {
            return;
        }
        let _guard = self.api.lock(session).await;
        if let Err(e) = self.api.close_tracks(session, &mids).await {
            tracing::warn!(session_id = %session, error = %e, "could not close SFU tracks");
        }
    }
}

#[async_trait]
impl Media for CloudflareSfu {
    fn name(&self) -> &'static str {
        "cloudflare"
    }

    fn takes_room_signals(&self) -> bool {
        true
    }

    async fn room_created(
        &self,
        room: &RoomId,
        creator: &ClientId,
        offer_sdp: Option<&str>,
    ) -> Result<MediaSession, MediaError> {
        {
            let mut rooms = self.rooms.lock();
            let state = rooms.entry(room.clone()).or_default();
            state
                .members
                .insert(creator.clone(), MemberState::default());
        }
        let Some(offer) = offer_sdp else {
            return Ok(MediaSession::default());
        };
        match self.publish(room, creator, offer).await {
            Ok((session, answer)) => Ok(MediaSession {
                connection_info: Some(self.connection_info(room, &session)),
                session_id: Some(session),
                answer_sdp: Some(answer),
                offer_sdp: None,
            }),
            Err(e) => {
                self.room_ended(room).await;
                Err(e)
            }
        }
    }

    async fn member_joined(
        &self,
        room: &RoomId,
        client: &ClientId,
    ) -> Result<MediaSession, MediaError> {
        let missing: Vec<Published> = {
            let mut rooms = self.rooms.lock();
            let state = rooms.entry(room.clone()).or_default();
            let missing: Vec<Published> = state
                .tracks
                .iter()
                .filter(|t| &t.publisher != client)
                .cloned()
                .collect();
            state.members.insert(
                client.clone(),
                MemberState {
                    awaiting: !missing.is_empty(),
                    joining: true,
                    ..MemberState::default()
                },
            );
            missing
        };
        if missing.is_empty() {
            return Ok(MediaSession::default());
        }
        match self.pull(room, client, missing).await {
            Ok((session, offer)) => Ok(MediaSession {
                connection_info: Some(self.connection_info(room, &session)),
                session_id: Some(session),
                answer_sdp: None,
                offer_sdp: Some(offer),
            }),
            Err(e) => {
                self.member_left(room, client).await;
                Err(e)
            }
        }
    }

    async fn member_admitted(&self, room: &RoomId, client: &ClientId) -> MediaUpdate {
        self.with_member(room, client, |m| m.joining = false);
        // Tracks published while it was joining (and it had no offer to answer).
        MediaUpdate {
            answer_sdp: None,
            offers: self.catch_up(room, client).await.into_iter().collect(),
        }
    }

    async fn member_left(&self, room: &RoomId, client: &ClientId) {
        let (own, others) = {
            let mut rooms = self.rooms.lock();
            let Some(state) = rooms.get_mut(room) else {
                return;
            };
            // A member on another node has no state here: only the pulls of its tracks.
            let me = state.members.remove(client);
            state.tracks.retain(|t| &t.publisher != client);
            // Each other member's pulls of the leaver's tracks.
            let mut others = Vec::new();
            for m in state.members.values_mut() {
                let (gone, kept): (HashMap<_, _>, HashMap<_, _>) = std::mem::take(&mut m.pulled)
                    .into_iter()
                    .partition(|(t, _)| &t.publisher == client);
                m.pulled = kept;
                if let (Some(s), false) = (&m.session, gone.is_empty()) {
                    others.push((s.clone(), gone.into_values().collect::<Vec<_>>()));
                }
            }
            let own = me.and_then(|me| {
                me.session.map(|s| {
                    let mut mids: Vec<String> = me.published.into_iter().collect();
                    mids.extend(me.pulled.into_values());
                    (s, mids)
                })
            });
            // No member left on this node: what others publish is read again at a join.
            if state.members.is_empty() {
                rooms.remove(room);
            }
            (own, others)
        };
        let own_session = own.as_ref().map(|(s, _)| s.clone());
        let mut closes = Vec::new();
        closes.extend(own);
        closes.extend(others);
        futures_util::future::join_all(closes.into_iter().map(|(s, mids)| async move {
            self.close_quietly(&s, mids).await;
        }))
        .await;
        if let Some(s) = own_session {
            self.api.forget(&s);
        }
    }

    fn published(&self, room: &RoomId, client: &ClientId) -> Option<serde_json::Value> {
        let rooms = self.rooms.lock();
        let tracks: Vec<serde_json::Value> = rooms
            .get(room)?
            .tracks
            .iter()
            .filter(|t| &t.publisher == client)
            .map(|t| json!({ "session_id": t.session, "track_name": t.track }))
            .collect();
        (!tracks.is_empty()).then_some(serde_json::Value::Array(tracks))
    }

    async fn remote_published(
        &self,
        room: &RoomId,
        publisher: &ClientId,
        tracks: &serde_json::Value,
    ) -> Vec<(ClientId, String)> {
        let listed: Vec<Published> = tracks
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| {
                        Some(Published {
                            publisher: publisher.clone(),
                            session: t.get("session_id")?.as_str()?.to_owned(),
                            track: t.get("track_name")?.as_str()?.to_owned(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let added = {
            let mut rooms = self.rooms.lock();
            let state = rooms.entry(room.clone()).or_default();
            let mut added = false;
            for t in listed {
                if !state.tracks.contains(&t) {
                    state.tracks.push(t);
                    added = true;
                }
            }
            added
        };
        if !added {
            return Vec::new();
        }
        self.offer_to_others(room, publisher).await
    }

    async fn room_ended(&self, room: &RoomId) {
        let Some(state) = self.rooms.lock().remove(room) else {
            return;
        };
        let closes = state.members.into_values().filter_map(|m| {
            let s = m.session?;
            let mut mids: Vec<String> = m.published.into_iter().collect();
            mids.extend(m.pulled.into_values());
            Some((s, mids))
        });
        futures_util::future::join_all(closes.map(|(s, mids)| async move {
            self.close_quietly(&s, mids).await;
            self.api.forget(&s);
        }))
        .await;
    }

    async fn offer(
        &self,
        room: &RoomId,
        client: &ClientId,
        sdp: &str,
    ) -> Result<MediaUpdate, MediaError> {
        // Its session is negotiating until the publication is answered: no pull of
        // another member's tracks may run on it meanwhile.
        {
            let mut rooms = self.rooms.lock();
            match rooms.get_mut(room).and_then(|r| r.members.get_mut(client)) {
                None => {
                    return Err(MediaError::Refused(format!(
                        "not a member of SFU room '{room}'"
                    )));
                }
                Some(m) if m.awaiting => {
                    return Err(MediaError::Refused(
                        "answer the SFU's offer before making one".into(),
                    ));
                }
                Some(m) => m.awaiting = true,
            }
        }
        let published = self.publish(room, client, sdp).await;
        self.with_member(room, client, |m| m.awaiting = false);
        let (_, answer) = published?;
        let mut offers = self.offer_to_others(room, client).await;
        // Tracks others published while it was publishing.
        offers.extend(self.catch_up(room, client).await);
        Ok(MediaUpdate {
            answer_sdp: Some(answer),
            offers,
        })
    }

    async fn answer(
        &self,
        room: &RoomId,
        client: &ClientId,
        sdp: &str,
    ) -> Result<MediaUpdate, MediaError> {
        sdp::check(sdp).map_err(MediaError::Refused)?;
        let session = {
            let rooms = self.rooms.lock();
            match rooms.get(room).and_then(|r| r.members.get(client)) {
                Some(m) if m.awaiting => m.session.clone(),
                Some(_) => None,
                None => {
                    return Err(MediaError::Refused(format!(
                        "not a member of SFU room '{room}'"
                    )));
                }
            }
        };
        let Some(session) = session else {
            return Err(MediaError::Refused(
                "no SFU offer is waiting for an answer".into(),
            ));
        };
        let result = {
            let _guard = self.api.lock(&session).await;
            self.api.renegotiate(&session, sdp).await
        };
        self.with_member(room, client, |m| m.awaiting = false);
        result?;
        // Tracks published while it was negotiating: the next offer.
        Ok(MediaUpdate {
            answer_sdp: None,
            offers: self.catch_up(room, client).await.into_iter().collect(),
        })
    }
}
