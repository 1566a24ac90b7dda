/**
 * The `/demo` page: two browsers meet in a room through signal-manager and open a
 * peer-to-peer connection (camera video when there is one, and a "chat" data channel).
 *
 * The member already in the room makes the offer when another one joins; the joiner
 * answers; ICE candidates trickle both ways. Query parameters pre-fill the form (`server`,
 * `client`, `token`, `room`, `payload=cbor`), and `autojoin=1` joins at once.
 * `window.demoState` exposes what the page shows, for automated tests.
 */

import {
  SignalClient,
  SignalClientError,
  SignalError,
  type CandidateSignal,
  type IceCandidateInit,
  type SdpSignal,
} from "../src/index.js";

// === State, visible to tests ===

interface ChatMessage {
  from: string;
  text: string;
  self: boolean;
  at: number;
}

interface DemoState {
  joined: boolean;
  clientId: string | null;
  roomId: string | null;
  peerId: string | null;
  signaling: string;
  iceConnectionState: string;
  connectionState: string;
  dataChannelOpen: boolean;
  hasLocalVideo: boolean;
  hasRemoteVideo: boolean;
  messages: ChatMessage[];
  errors: string[];
  /** Times the connection to the server was lost and the session taken back. */
  resumes: number;
  /** Offers and answers this page made (a resumed session needs no new one). */
  negotiations: number;
}

const state: DemoState = {
  joined: false,
  clientId: null,
  roomId: null,
  peerId: null,
  signaling: "not connected",
  iceConnectionState: "new",
  connectionState: "new",
  dataChannelOpen: false,
  hasLocalVideo: false,
  hasRemoteVideo: false,
  messages: [],
  errors: [],
  resumes: 0,
  negotiations: 0,
};

declare global {
  interface Window {
    demoState: DemoState;
  }
}
window.demoState = state;

// === Elements ===

function el<T extends HTMLElement>(id: string): T {
  const e = document.getElementById(id);
  if (!e) throw new Error(`missing element #${id}`);
  return e as T;
}

const ui = {
  form: el<HTMLFormElement>("join-form"),
  server: el<HTMLInputElement>("server"),
  client: el<HTMLInputElement>("client"),
  token: el<HTMLInputElement>("token"),
  room: el<HTMLInputElement>("room"),
  join: el<HTMLButtonElement>("join"),
  leave: el<HTMLButtonElement>("leave"),
  stSignaling: el("st-signaling"),
  stPeer: el("st-peer"),
  stIce: el("st-ice"),
  stChannel: el("st-channel"),
  stMessage: el("st-message"),
  localVideo: el<HTMLVideoElement>("local-video"),
  remoteVideo: el<HTMLVideoElement>("remote-video"),
  localLabel: el("local-label"),
  localPlaceholder: el("local-placeholder"),
  remotePlaceholder: el("remote-placeholder"),
  invite: el("invite"),
  inviteLink: el<HTMLAnchorElement>("invite-link"),
  remoteLabel: el("remote-label"),
  chatLog: el<HTMLOListElement>("chat-log"),
  chatForm: el<HTMLFormElement>("chat-form"),
  chatInput: el<HTMLInputElement>("chat-input"),
  chatSend: el<HTMLButtonElement>("chat-send"),
  eventLog: el<HTMLOListElement>("event-log"),
};

// === Rendering ===

type Tone = "ok" | "warn" | "bad" | "";

function setText(node: HTMLElement, text: string, tone: Tone = ""): void {
  node.textContent = text;
  node.className = tone;
}

function toneOf(s: string): Tone {
  if (["connected", "completed", "open", "stable", "joined"].includes(s)) return "ok";
  if (["failed", "closed", "disconnected", "error"].includes(s)) return "bad";
  if (s === "new" || s === "none" || s === "not connected") return "";
  return "warn";
}

function render(): void {
  setText(ui.stSignaling, state.signaling, toneOf(state.signaling));
  setText(ui.stPeer, state.peerId ?? "none", state.peerId ? "ok" : "");
  const ice = state.peerId ? `${state.iceConnectionState} / ${state.connectionState}` : "new";
  setText(ui.stIce, ice, state.peerId ? toneOf(state.connectionState) : "");
  const channel = state.dataChannelOpen ? "open" : channelState();
  setText(ui.stChannel, channel, channel === "none" ? "" : toneOf(channel));
  ui.chatInput.disabled = !state.dataChannelOpen;
  ui.chatSend.disabled = !state.dataChannelOpen;
  ui.join.disabled = state.joined || busy;
  ui.leave.disabled = !state.joined;
  for (const input of [ui.server, ui.client, ui.token, ui.room]) input.disabled = state.joined || busy;
  ui.localLabel.textContent = state.clientId ? `(${state.clientId})` : "";
  ui.remoteLabel.textContent = state.peerId ? `(${state.peerId})` : "";
  ui.localPlaceholder.hidden = state.hasLocalVideo;
  ui.localPlaceholder.textContent = state.joined ? "No camera: chat only" : "Camera off";
  ui.remotePlaceholder.hidden = state.hasRemoteVideo;
  ui.remotePlaceholder.textContent = state.peerId ? `Waiting for video from ${state.peerId}` : "No peer yet";
  renderInvite();
}

function channelState(): string {
  if (!state.peerId) return "none";
  return channel?.readyState ?? "connecting";
}

/** With the development credentials, a link that opens the other test client in this room. */
function renderInvite(): void {
  const other = DEV_CLIENTS.find(([id]) => id !== state.clientId && DEV_CLIENTS.some(([me]) => me === state.clientId));
  if (!state.joined || state.peerId || !other || !state.roomId) {
    ui.invite.hidden = true;
    return;
  }
  const q = new URLSearchParams({ client: other[0], token: other[1], room: state.roomId, autojoin: "1" });
  if (params.has("server")) q.set("server", ui.server.value);
  ui.inviteLink.href = `${location.pathname}?${q}`;
  ui.invite.hidden = false;
}

/** The test credentials a server started with --dev accepts. */
const DEV_CLIENTS: readonly (readonly [string, string])[] = [
  ["test_client_1", "test_token_1"],
  ["test_client_2", "test_token_2"],
];

function say(text: string, bad = false): void {
  ui.stMessage.textContent = text;
  ui.stMessage.className = bad ? "message bad" : "message";
  if (bad) state.errors.push(text);
}

function log(text: string): void {
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()}  ${text}`;
  ui.eventLog.append(li);
  ui.eventLog.scrollTop = ui.eventLog.scrollHeight;
}

function addChat(from: string, text: string, self: boolean): void {
  state.messages.push({ from, text, self, at: Date.now() });
  const li = document.createElement("li");
  if (self) li.className = "self";
  const who = document.createElement("span");
  who.className = "from";
  who.textContent = from;
  li.append(who, document.createTextNode(text));
  ui.chatLog.append(li);
  ui.chatLog.scrollTop = ui.chatLog.scrollHeight;
}

function addSystemLine(text: string): void {
  const li = document.createElement("li");
  li.className = "system";
  li.textContent = text;
  ui.chatLog.append(li);
}

// === Session ===

let client: SignalClient | null = null;
let pc: RTCPeerConnection | null = null;
let channel: RTCDataChannel | null = null;
let localStream: MediaStream | null = null;
let rtcConfig: RTCConfiguration = { iceServers: [] };
let queuedCandidates: IceCandidateInit[] = [];
let busy = false;
/** Set while this page closes its own connection (Leave, or after the room closed). */
let closing = false;

async function join(): Promise<void> {
  const url = ui.server.value.trim();
  const clientId = ui.client.value.trim();
  const token = ui.token.value;
  const room = ui.room.value.trim();
  const payload = params.get("payload") === "cbor" ? "cbor" : "json";
  busy = true;
  state.signaling = "connecting";
  say(`Connecting to ${url} …`);
  render();
  try {
    // Resumable: a lost connection (a network change, a server restart) is taken back
    // by the client with what was sent meanwhile, and the call goes on.
    const c = await SignalClient.connect(url, { clientId, token, payload, timeoutMs: 10_000, resume: true });
    client = c;
    state.clientId = clientId;
    log(`connected as ${clientId}, session ${c.session.session_id} (${payload.toUpperCase()})`);
    wire(c);
    try {
      await c.register();
      log("registered");
    } catch (e) {
      if (!(e instanceof SignalError && e.code === 409)) throw e;
      log("already registered");
    }
    [rtcConfig, localStream] = await Promise.all([fetchRtcConfig(url, token), openCamera()]);
    const result = await c.joinOrCreate(room, { metadata: { page: "demo" } });
    state.joined = true;
    state.roomId = result.roomId;
    state.signaling = "joined";
    if (result.created) {
      log(`created room ${result.roomId}`);
      say(`Waiting for someone to join room "${result.roomId}".`);
    } else {
      const others = result.ack.participants.map((p) => p.client_id);
      log(`joined room ${result.roomId}; members: ${others.join(", ") || "none"}`);
      say(
        others.length
          ? `Joined room "${result.roomId}". Waiting for an offer from ${others.join(", ")} …`
          : `Joined room "${result.roomId}". Waiting for someone to join.`,
      );
    }
  } catch (e) {
    say(`Could not join: ${describe(e)}`, true);
    state.signaling = "error";
    client?.close();
    client = null;
  } finally {
    busy = false;
    render();
  }
}

async function leave(): Promise<void> {
  const c = client;
  const room = state.roomId;
  closing = c !== null;
  closePeer("you left");
  if (c && room) {
    try {
      await c.leaveRoom(room, { reason: "left the demo" });
    } catch (e) {
      log(`leave: ${describe(e)}`);
    }
  }
  await c?.disconnect();
  stopCamera();
  client = null;
  state.joined = false;
  state.roomId = null;
  state.signaling = "not connected";
  say("Left the room.");
  render();
}

function wire(c: SignalClient): void {
  c.on("peerJoined", (p) => {
    log(`${p.client_id} joined (${p.role})`);
    if (pc) {
      log(`already connected to ${state.peerId}; this demo connects two peers, ignoring ${p.client_id}`);
      return;
    }
    void call(p.client_id);
  });
  c.on("peerLeft", (p) => {
    log(`${p.client_id} left (${p.reason})`);
    if (p.client_id === state.peerId) {
      closePeer(`${p.client_id} left`);
      say(`${p.client_id} left. Waiting for someone to join.`);
    }
  });
  c.on("roomClosed", (r) => {
    log(`room ${r.room_id} closed: ${r.reason}`);
    closePeer("room closed");
    state.joined = false;
    state.roomId = null;
    state.signaling = "connected";
    say(`The room closed (${r.reason}). Join again to start over.`);
    render();
    closing = true;
    void c.disconnect();
  });
  c.on("reconnecting", (info) => {
    log(`connection to the server lost (${info.code}); resuming …`);
    state.signaling = "reconnecting";
    render();
  });
  c.on("resumed", (r) => {
    state.resumes += 1;
    state.signaling = state.joined ? "joined" : "connected";
    log(`session resumed (${r.replayed} frames sent again)`);
    render();
  });
  c.on("peerReconnecting", (p) => log(`${p.client_id} lost its connection; it has ${p.window} s to come back`));
  c.on("offer", (o) => void onOffer(o));
  c.on("answer", (a) => void onAnswer(a));
  c.on("iceCandidate", (s) => void onCandidate(s));
  c.on("error", (e) => {
    log(`error: ${describe(e)}`);
    say(describe(e), true);
  });
  c.on("close", (info) => {
    log(`connection closed (${info.code}${info.reason ? `: ${info.reason}` : ""})`);
    if (client === c) {
      if (!closing) {
        const why = info.reason ? `${info.code}: ${info.reason}` : `${info.code}`;
        say(`Lost the connection to the server (${why}).`, true);
      }
      closing = false;
      client = null;
      closePeer("disconnected");
      stopCamera();
      state.joined = false;
      state.roomId = null;
      state.signaling = "not connected";
      render();
    }
  });
}

// === WebRTC ===

/** The existing member's side: a peer joined, offer to it. */
async function call(peerId: string): Promise<void> {
  const c = client;
  if (!c) return;
  try {
    const conn = newPeerConnection(peerId);
    setupChannel(conn.createDataChannel("chat"));
    const video = localStream?.getVideoTracks()[0];
    if (video && localStream) {
      conn.addTrack(video, localStream);
    } else {
      // No camera here: still ask for the peer's video.
      conn.addTransceiver("video", { direction: "recvonly" });
    }
    await conn.setLocalDescription(await conn.createOffer());
    state.negotiations += 1;
    c.sendOffer(peerId, conn.localDescription!.sdp, state.roomId ?? undefined);
    log(`sent offer to ${peerId}`);
    say(`Calling ${peerId} …`);
  } catch (e) {
    say(`Could not call ${peerId}: ${describe(e)}`, true);
  }
  render();
}

/** The joiner's side: answer the existing member's offer. */
async function onOffer(o: SdpSignal): Promise<void> {
  const c = client;
  if (!c) return;
  log(`offer from ${o.from}`);
  if (pc && state.peerId !== o.from) {
    log(`ignoring offer from ${o.from}: already connected to ${state.peerId}`);
    return;
  }
  try {
    const conn = pc ?? newPeerConnection(o.from);
    await conn.setRemoteDescription({ type: "offer", sdp: o.sdp });
    const video = localStream?.getVideoTracks()[0];
    if (video && localStream && !conn.getSenders().some((s) => s.track === video)) {
      // Reuses the offer's video transceiver and makes it send as well.
      conn.addTrack(video, localStream);
    }
    await conn.setLocalDescription(await conn.createAnswer());
    state.negotiations += 1;
    c.sendAnswer(o.from, conn.localDescription!.sdp, o.roomId ?? undefined);
    log(`sent answer to ${o.from}`);
    await flushCandidates(conn);
  } catch (e) {
    say(`Could not answer ${o.from}: ${describe(e)}`, true);
  }
  render();
}

async function onAnswer(a: SdpSignal): Promise<void> {
  log(`answer from ${a.from}`);
  if (!pc || a.from !== state.peerId) return;
  try {
    await pc.setRemoteDescription({ type: "answer", sdp: a.sdp });
    await flushCandidates(pc);
  } catch (e) {
    say(`Could not apply the answer: ${describe(e)}`, true);
  }
  render();
}

async function onCandidate(s: CandidateSignal): Promise<void> {
  if (!s.candidate || s.from !== state.peerId) return;
  if (!pc || !pc.remoteDescription) {
    queuedCandidates.push(s.candidate);
    return;
  }
  try {
    await pc.addIceCandidate(s.candidate);
  } catch (e) {
    log(`bad candidate from ${s.from}: ${describe(e)}`);
  }
}

async function flushCandidates(conn: RTCPeerConnection): Promise<void> {
  const queued = queuedCandidates;
  queuedCandidates = [];
  for (const cand of queued) {
    try {
      await conn.addIceCandidate(cand);
    } catch (e) {
      log(`bad candidate: ${describe(e)}`);
    }
  }
}

function newPeerConnection(peerId: string): RTCPeerConnection {
  const conn = new RTCPeerConnection(rtcConfig);
  pc = conn;
  state.peerId = peerId;
  queuedCandidates = [];
  conn.onicecandidate = (ev) => {
    if (!ev.candidate || !client || pc !== conn) return;
    try {
      client.sendCandidate(peerId, ev.candidate.toJSON(), state.roomId ?? undefined);
    } catch (e) {
      log(`could not send a candidate: ${describe(e)}`);
    }
  };
  const update = (): void => {
    if (pc !== conn) return;
    state.iceConnectionState = conn.iceConnectionState;
    state.connectionState = conn.connectionState;
    render();
  };
  conn.oniceconnectionstatechange = update;
  conn.onconnectionstatechange = () => {
    update();
    log(`peer connection ${conn.connectionState}`);
    if (conn.connectionState === "connected") say(`Connected to ${peerId}.`);
    if (conn.connectionState === "failed") say(`The connection to ${peerId} failed.`, true);
  };
  conn.onsignalingstatechange = update;
  conn.ondatachannel = (ev) => setupChannel(ev.channel);
  conn.ontrack = (ev) => {
    const stream = ev.streams[0] ?? new MediaStream([ev.track]);
    if (ui.remoteVideo.srcObject !== stream) ui.remoteVideo.srcObject = stream;
    state.hasRemoteVideo = true;
    log(`receiving ${ev.track.kind} from ${peerId}`);
  };
  update();
  return conn;
}

function setupChannel(dc: RTCDataChannel): void {
  channel = dc;
  dc.onopen = () => {
    if (channel !== dc) return;
    state.dataChannelOpen = true;
    log(`data channel "${dc.label}" open`);
    addSystemLine(`Chat with ${state.peerId} is open.`);
    render();
    ui.chatInput.focus();
  };
  dc.onclose = () => {
    if (channel !== dc) return;
    if (state.dataChannelOpen) addSystemLine(`Chat with ${state.peerId ?? "the peer"} closed.`);
    state.dataChannelOpen = false;
    log(`data channel "${dc.label}" closed`);
    render();
  };
  dc.onmessage = (ev) => {
    if (typeof ev.data === "string") addChat(state.peerId ?? "peer", ev.data, false);
  };
  render();
}

function closePeer(why: string): void {
  if (channel) {
    channel.onopen = channel.onclose = channel.onmessage = null;
    channel.close();
  }
  if (pc) {
    pc.close();
    log(`peer connection closed (${why})`);
  }
  if (state.dataChannelOpen) addSystemLine(`Chat closed: ${why}.`);
  channel = null;
  pc = null;
  queuedCandidates = [];
  state.peerId = null;
  state.dataChannelOpen = false;
  state.iceConnectionState = "new";
  state.connectionState = "new";
  state.hasRemoteVideo = false;
  ui.remoteVideo.srcObject = null;
  render();
}

/** `/webrtc/config` of the signaling server, or no ICE servers when it has none for us. */
async function fetchRtcConfig(wsUrl: string, token: string): Promise<RTCConfiguration> {
  const fallback: RTCConfiguration = { iceServers: [] };
  try {
    const http = new URL(wsUrl);
    http.protocol = http.protocol === "wss:" ? "https:" : "http:";
    http.pathname = "/webrtc/config";
    http.search = "";
    const res = await fetch(http, {
      headers: { Authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(5_000),
    });
    if (!res.ok) {
      log(`/webrtc/config: ${res.status}, using no ICE servers`);
      return fallback;
    }
    const body = (await res.json()) as {
      ice_servers?: { urls: string | string[]; username?: string; credential?: string }[];
      ice_transport_policy?: string;
      bundle_policy?: string;
    };
    const iceServers: RTCIceServer[] = (body.ice_servers ?? []).map((s) => ({
      urls: s.urls,
      ...(s.username !== undefined ? { username: s.username } : {}),
      ...(s.credential !== undefined ? { credential: s.credential } : {}),
    }));
    const config: RTCConfiguration = { iceServers };
    if (body.ice_transport_policy === "relay" || body.ice_transport_policy === "all") {
      config.iceTransportPolicy = body.ice_transport_policy;
    }
    if (body.bundle_policy === "balanced" || body.bundle_policy === "max-compat" || body.bundle_policy === "max-bundle") {
      config.bundlePolicy = body.bundle_policy;
    }
    log(`/webrtc/config: ${iceServers.length} ICE server entr${iceServers.length === 1 ? "y" : "ies"}`);
    return config;
  } catch (e) {
    log(`/webrtc/config unavailable (${describe(e)}), using no ICE servers`);
    return fallback;
  }
}

async function openCamera(): Promise<MediaStream | null> {
  if (!navigator.mediaDevices?.getUserMedia) {
    log("no camera access on this page (needs HTTPS or localhost); chat only");
    return null;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    ui.localVideo.srcObject = stream;
    state.hasLocalVideo = true;
    log("camera on");
    return stream;
  } catch (e) {
    log(`no camera (${describe(e)}); chat only`);
    return null;
  }
}

function stopCamera(): void {
  for (const t of localStream?.getTracks() ?? []) t.stop();
  localStream = null;
  ui.localVideo.srcObject = null;
  state.hasLocalVideo = false;
}

function describe(e: unknown): string {
  if (e instanceof SignalError) return `${e.code} ${e.serverMessage}`;
  if (e instanceof SignalClientError || e instanceof Error) return e.message;
  return String(e);
}

// === Start ===

const params = new URLSearchParams(location.search);
const sameOrigin = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`;
ui.server.value = params.get("server") ?? sameOrigin;
ui.client.value = params.get("client") ?? "test_client_1";
ui.token.value = params.get("token") ?? "test_token_1";
ui.room.value = params.get("room") ?? "demo";

ui.form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!state.joined && !busy) void join();
});
ui.leave.addEventListener("click", () => void leave());
ui.chatForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = ui.chatInput.value.trim();
  if (!text || !channel || channel.readyState !== "open") return;
  channel.send(text);
  addChat(state.clientId ?? "you", text, true);
  ui.chatInput.value = "";
});
window.addEventListener("pagehide", () => {
  closePeer("page closed");
  client?.close(1001, "page closed");
});

say("Pick a room and press Join. Whoever joins the same room next gets connected to you.");
render();
if (params.get("autojoin") === "1") void join();
