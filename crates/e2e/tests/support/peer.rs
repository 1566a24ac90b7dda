//! A test peer: a webrtc-rs `PeerConnection` with one data channel, driven through a
//! signaling [`Transport`] with trickle ICE.
//!
//! The peer binds only loopback UDP sockets, has no STUN or TURN servers and no mDNS, so
//! its only candidates are loopback (`127.0.0.x`) host candidates and nothing leaves the machine.
//! Each local candidate is sent as soon as it is gathered (after the local description
//! went out, so the remote side sees the offer or answer first); remote candidates are
//! applied as they arrive, or held until the remote description is set.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use rtc::ice::{mdns::MulticastDnsMode, network_type::NetworkType};
use tokio::{sync::mpsc, task::JoinHandle};
use webrtc::{
    data_channel::{DataChannel, DataChannelEvent},
    peer_connection::{
        PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
        RTCIceCandidateInit, RTCIceGatheringState, RTCPeerConnectionIceEvent,
        RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
    },
};

use super::signaling::{Candidate, Incoming, Signal, Transport};

/// The label of the test data channel.
pub const LABEL: &str = "e2e";

/// Which side of the offer/answer exchange a peer takes.
#[derive(Debug, Clone)]
pub enum Role {
    /// Creates the data channel and sends the offer to this peer.
    Offerer {
        /// The peer to offer to.
        to: String,
    },
    /// Waits for an offer and answers whoever sent it.
    Answerer,
}

/// What a peer's signaling did, for assertions.
#[derive(Debug, Default, Clone)]
pub struct Record {
    /// The remote peer, once known (the offer's target, or the sender of the offer).
    pub remote: Option<String>,
    /// Local candidates sent to the remote peer, in order.
    pub sent_candidates: Vec<Candidate>,
    /// Candidates received, with the sender the server stamped, in order.
    pub received_candidates: Vec<(String, Candidate)>,
    /// Local ICE gathering finished (no more candidates will be sent).
    pub gathering_complete: bool,
}

/// Options for building a peer.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How many loopback UDP sockets to bind, on `127.0.0.1`, `127.0.0.2`, … (one host
    /// candidate each; webrtc-rs binds one socket per distinct address).
    pub udp_sockets: u8,
}

impl Default for Options {
    fn default() -> Self {
        Self { udp_sockets: 1 }
    }
}

/// What the peer tells the test.
enum Event {
    Open(Arc<dyn DataChannel>),
    Message(String),
    State(RTCPeerConnectionState),
    Failed(String),
}

/// Events from webrtc-rs callbacks, handled by the signaling task.
enum Local {
    Candidate(Candidate),
    DataChannel(Arc<dyn DataChannel>),
    Gathered,
    State(RTCPeerConnectionState),
}

struct Handler(mpsc::UnboundedSender<Local>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json()
            && !init.candidate.is_empty()
        {
            let _ = self.0.send(Local::Candidate(Candidate {
                candidate: init.candidate,
                sdp_mid: init.sdp_mid.filter(|m| !m.is_empty()),
                sdp_m_line_index: init.sdp_mline_index,
            }));
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.0.send(Local::Gathered);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.0.send(Local::State(state));
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let _ = self.0.send(Local::DataChannel(dc));
    }
}

/// A running test peer.
pub struct Peer {
    /// The peer's id (its signaling identity).
    pub id: String,
    pc: Arc<dyn PeerConnection>,
    events: mpsc::UnboundedReceiver<Event>,
    channel: Option<Arc<dyn DataChannel>>,
    record: Arc<Mutex<Record>>,
    state: RTCPeerConnectionState,
    task: JoinHandle<()>,
}

impl Peer {
    /// Builds a peer connection and starts signaling over `transport` in `role`.
    pub async fn start(transport: Transport, role: Role, options: Options) -> Peer {
        let (local_tx, local_rx) = mpsc::unbounded_channel();
        let setting_engine = SettingEngineBuilder::new()
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            .with_network_types(vec![NetworkType::Udp4])
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(setting_engine)
            .with_handler(Arc::new(Handler(local_tx)))
            .with_udp_addrs(
                (1..=options.udp_sockets)
                    .map(|i| format!("127.0.0.{i}:0"))
                    .collect(),
            )
            .build()
            .await
            .expect("peer connection builds");
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let (events_tx, events) = mpsc::unbounded_channel();
        let record = Arc::new(Mutex::new(Record::default()));
        let id = transport.id().to_owned();
        let signaling = Signaling {
            pc: pc.clone(),
            transport,
            events: events_tx.clone(),
            record: record.clone(),
            remote: None,
            local_sent: false,
            queued_local: Vec::new(),
            queued_remote: Vec::new(),
        };
        let task = tokio::spawn(async move {
            if let Err(e) = signaling.run(role, local_rx).await {
                let _ = events_tx.send(Event::Failed(e));
            }
        });
        Peer {
            id,
            pc,
            events,
            channel: None,
            record,
            state: RTCPeerConnectionState::New,
            task,
        }
    }

    /// Waits for the next event; panics if signaling failed or the peer connection failed.
    async fn next(&mut self, what: &str) -> Event {
        match self.events.recv().await {
            Some(Event::Failed(e)) => panic!("{}: while waiting for {what}: {e}", self.id),
            Some(Event::State(RTCPeerConnectionState::Failed)) => {
                panic!(
                    "{}: peer connection failed while waiting for {what}",
                    self.id
                )
            }
            Some(e) => e,
            None => panic!("{}: peer stopped while waiting for {what}", self.id),
        }
    }

    /// Waits until the data channel is open on this side.
    pub async fn open(&mut self) {
        while self.channel.is_none() {
            match self.next("the data channel to open").await {
                Event::Open(dc) => self.channel = Some(dc),
                Event::State(s) => self.state = s,
                Event::Message(m) => panic!("{}: message before open: {m}", self.id),
                Event::Failed(_) => unreachable!(),
            }
        }
    }

    /// Waits until the peer connection reports `Connected`.
    pub async fn connected(&mut self) {
        while self.state != RTCPeerConnectionState::Connected {
            match self.next("the connection").await {
                Event::Open(dc) => self.channel = Some(dc),
                Event::State(s) => self.state = s,
                Event::Message(m) => panic!("{}: message before connected: {m}", self.id),
                Event::Failed(_) => unreachable!(),
            }
        }
    }

    /// Sends a text message on the open data channel.
    pub async fn send_text(&self, text: &str) {
        let dc = self.channel.as_ref().expect("data channel open");
        dc.send_text(text).await.expect("data channel send");
    }

    /// The open data channel's label.
    pub async fn label(&self) -> String {
        let dc = self.channel.as_ref().expect("data channel open");
        dc.label().await.expect("data channel label")
    }

    /// Waits for the next text message on the data channel.
    pub async fn recv_text(&mut self) -> String {
        loop {
            match self.next("a data channel message").await {
                Event::Message(m) => return m,
                Event::Open(dc) => self.channel = Some(dc),
                Event::State(s) => self.state = s,
                Event::Failed(_) => unreachable!(),
            }
        }
    }

    /// A snapshot of what signaling did so far.
    pub fn record(&self) -> Record {
        self.record.lock().expect("record lock").clone()
    }

    /// Waits (polling) until `f` holds for the record, or `within` passes; the last record.
    pub async fn record_until(&self, within: Duration, f: impl Fn(&Record) -> bool) -> Record {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let r = self.record();
            if f(&r) || tokio::time::Instant::now() >= deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Closes the peer connection and stops signaling.
    pub async fn close(self) {
        self.task.abort();
        let _ = self.pc.close().await;
    }
}

/// The signaling task's state.
struct Signaling {
    pc: Arc<dyn PeerConnection>,
    transport: Transport,
    events: mpsc::UnboundedSender<Event>,
    record: Arc<Mutex<Record>>,
    remote: Option<String>,
    /// The local description went out: local candidates may follow it.
    local_sent: bool,
    queued_local: Vec<Candidate>,
    queued_remote: Vec<Candidate>,
}

type Result<T> = std::result::Result<T, String>;

fn rtc_err(what: &'static str) -> impl Fn(webrtc::error::Error) -> String {
    move |e| format!("{what}: {e}")
}

impl Signaling {
    async fn run(mut self, role: Role, mut local: mpsc::UnboundedReceiver<Local>) -> Result<()> {
        if let Role::Offerer { to } = role {
            let dc = self
                .pc
                .create_data_channel(LABEL, None)
                .await
                .map_err(rtc_err("create_data_channel"))?;
            self.watch_channel(dc);
            let offer = self
                .pc
                .create_offer(None)
                .await
                .map_err(rtc_err("create_offer"))?;
            self.pc
                .set_local_description(offer.clone())
                .await
                .map_err(rtc_err("set_local_description(offer)"))?;
            self.set_remote_peer(&to);
            self.transport.send(&to, &Signal::Offer(offer.sdp)).await?;
            self.local_sent_then_flush().await?;
        }
        loop {
            tokio::select! {
                l = local.recv() => match l {
                    Some(l) => self.on_local(l).await?,
                    None => return Err("peer connection handler dropped".into()),
                },
                i = self.transport.recv() => self.on_signal(i?).await?,
            }
        }
    }

    fn set_remote_peer(&mut self, id: &str) {
        self.remote = Some(id.to_owned());
        self.record.lock().expect("record lock").remote = Some(id.to_owned());
    }

    async fn local_sent_then_flush(&mut self) -> Result<()> {
        self.local_sent = true;
        for c in std::mem::take(&mut self.queued_local) {
            self.send_candidate(c).await?;
        }
        Ok(())
    }

    async fn send_candidate(&mut self, c: Candidate) -> Result<()> {
        let to = self.remote.clone().ok_or("no remote peer")?;
        self.transport
            .send(&to, &Signal::Candidate(c.clone()))
            .await?;
        self.record
            .lock()
            .expect("record lock")
            .sent_candidates
            .push(c);
        Ok(())
    }

    async fn on_local(&mut self, l: Local) -> Result<()> {
        match l {
            Local::Candidate(c) if self.local_sent => self.send_candidate(c).await?,
            Local::Candidate(c) => self.queued_local.push(c),
            Local::DataChannel(dc) => self.watch_channel(dc),
            Local::Gathered => self.record.lock().expect("record lock").gathering_complete = true,
            Local::State(s) => {
                let _ = self.events.send(Event::State(s));
            }
        }
        Ok(())
    }

    async fn on_signal(&mut self, i: Incoming) -> Result<()> {
        let Incoming { from, signal } = i;
        match signal {
            Signal::Offer(sdp) => {
                if self.remote.is_some() {
                    return Err(format!("unexpected offer from {from}"));
                }
                self.set_remote_peer(&from);
                let offer = RTCSessionDescription::offer(sdp).map_err(rtc_err("offer SDP"))?;
                self.pc
                    .set_remote_description(offer)
                    .await
                    .map_err(rtc_err("set_remote_description(offer)"))?;
                self.apply_queued_remote().await?;
                let answer = self
                    .pc
                    .create_answer(None)
                    .await
                    .map_err(rtc_err("create_answer"))?;
                self.pc
                    .set_local_description(answer.clone())
                    .await
                    .map_err(rtc_err("set_local_description(answer)"))?;
                self.transport
                    .send(&from, &Signal::Answer(answer.sdp))
                    .await?;
                self.local_sent_then_flush().await?;
            }
            Signal::Answer(sdp) => {
                if self.remote.as_deref() != Some(from.as_str()) || !self.local_sent {
                    return Err(format!("unexpected answer from {from}"));
                }
                let answer = RTCSessionDescription::answer(sdp).map_err(rtc_err("answer SDP"))?;
                self.pc
                    .set_remote_description(answer)
                    .await
                    .map_err(rtc_err("set_remote_description(answer)"))?;
                self.apply_queued_remote().await?;
            }
            Signal::Candidate(c) => {
                self.record
                    .lock()
                    .expect("record lock")
                    .received_candidates
                    .push((from.clone(), c.clone()));
                if self.remote.as_deref().is_some_and(|r| r != from) {
                    return Err(format!("candidate from a stranger {from}"));
                }
                if self.pc.remote_description().await.is_some() {
                    self.add_remote(c).await?;
                } else {
                    self.queued_remote.push(c);
                }
            }
        }
        Ok(())
    }

    async fn apply_queued_remote(&mut self) -> Result<()> {
        for c in std::mem::take(&mut self.queued_remote) {
            self.add_remote(c).await?;
        }
        Ok(())
    }

    async fn add_remote(&mut self, c: Candidate) -> Result<()> {
        self.pc
            .add_ice_candidate(RTCIceCandidateInit {
                candidate: c.candidate,
                sdp_mid: c.sdp_mid,
                sdp_mline_index: c.sdp_m_line_index,
                ..Default::default()
            })
            .await
            .map_err(rtc_err("add_ice_candidate"))
    }

    /// Forwards the channel's open and messages to the test.
    fn watch_channel(&self, dc: Arc<dyn DataChannel>) {
        let events = self.events.clone();
        tokio::spawn(async move {
            while let Some(e) = dc.poll().await {
                let sent = match e {
                    DataChannelEvent::OnOpen => events.send(Event::Open(dc.clone())),
                    DataChannelEvent::OnMessage(m) => events.send(Event::Message(
                        String::from_utf8_lossy(&m.data).into_owned(),
                    )),
                    DataChannelEvent::OnClose => break,
                    _ => Ok(()),
                };
                if sent.is_err() {
                    break;
                }
            }
        });
    }
}
