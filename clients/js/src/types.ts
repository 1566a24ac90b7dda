/**
 * The registries of the frame header (message types and payload types) and the payload
 * schemas of every message. They mirror the server's `signal-protocol` crate
 * (`crates/protocol/src/types.rs` and `payload.rs`); field names are the wire names.
 */

/** The protocol version this client speaks. A server refuses versions newer than its own. */
export const PROTOCOL_VERSION = "1.0.0";

/** The message type byte of a frame (offset 1). */
export const MessageType = {
  /** C→S: authenticate; must be the first frame. */
  Connect: 0x01,
  /** S→C: session established. */
  ConnectAck: 0x02,
  /** C→S: clean goodbye. */
  Disconnect: 0x03,
  /** C→S: keep-alive (PING). */
  Heartbeat: 0x04,
  /** S→C: keep-alive answer (PING_ACK). */
  HeartbeatAck: 0x05,
  /** C→S: take a dropped session back, instead of CONNECT (extension). */
  Resume: 0x06,
  /** S→C: session taken back; what was missed follows (extension). */
  ResumeAck: 0x07,
  /** C→S: a fresh credential for this connection, before its own expires (extension). */
  TokenRefresh: 0x08,
  /** S→C: the fresh credential now holds the connection (extension). */
  TokenRefreshAck: 0x09,
  /** Both: SDP offer relayed to a target. */
  SignalOffer: 0x10,
  /** Both: SDP answer relayed to a target. */
  SignalAnswer: 0x11,
  /** Both: ICE candidate relayed to a target. */
  SignalIceCandidate: 0x12,
  /** C→S: persist this client. */
  Register: 0x20,
  /** S→C: registration committed. */
  RegisterAck: 0x21,
  /** C→S: delete this client's registration. */
  Unregister: 0x22,
  /** S→C: registration deleted. */
  UnregisterAck: 0x23,
  /** C→S: create a room. */
  RoomCreate: 0x30,
  /** S→C: room created. */
  RoomCreateAck: 0x31,
  /** C→S: join a room. */
  RoomJoin: 0x32,
  /** S→C: room joined. */
  RoomJoinAck: 0x33,
  /** C→S: leave a room. */
  RoomLeave: 0x34,
  /** S→C: room left. */
  RoomLeaveAck: 0x35,
  /** S→C: another member joined a room this client is in. */
  PeerJoined: 0x36,
  /** S→C: another member left a room this client is in. */
  PeerLeft: 0x37,
  /** S→C: a room this client was in has terminated. */
  RoomClosed: 0x38,
  /** S→C: another member's connection was lost; it may resume (extension). */
  PeerReconnecting: 0x39,
  /** S→C: this connection's credential expires soon; refresh it (extension). */
  TokenExpiring: 0x3a,
  /** S→C: a request failed. */
  Error: 0xff,
} as const;

/** One of the {@link MessageType} values. */
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/** The payload type byte of a frame (offset 18): how the payload bytes are encoded. */
export const PayloadType = {
  /** Raw bytes. */
  Binary: 0x01,
  /** UTF-8 JSON text. */
  Json: 0x02,
  /** UTF-8 text. */
  Text: 0x03,
  /** Protocol Buffers (reserved; no message uses it). */
  Protobuf: 0x04,
  /** CBOR (RFC 8949), same schema as JSON. */
  Cbor: 0x05,
} as const;

/** One of the {@link PayloadType} values. */
export type PayloadType = (typeof PayloadType)[keyof typeof PayloadType];

const MESSAGE_TYPE_NAMES: Readonly<Record<number, string>> = {
  0x01: "CONNECT",
  0x02: "CONNECT_ACK",
  0x03: "DISCONNECT",
  0x04: "HEARTBEAT",
  0x05: "HEARTBEAT_ACK",
  0x06: "RESUME",
  0x07: "RESUME_ACK",
  0x08: "TOKEN_REFRESH",
  0x09: "TOKEN_REFRESH_ACK",
  0x10: "SIGNAL_OFFER",
  0x11: "SIGNAL_ANSWER",
  0x12: "SIGNAL_ICE_CANDIDATE",
  0x20: "REGISTER",
  0x21: "REGISTER_ACK",
  0x22: "UNREGISTER",
  0x23: "UNREGISTER_ACK",
  0x30: "ROOM_CREATE",
  0x31: "ROOM_CREATE_ACK",
  0x32: "ROOM_JOIN",
  0x33: "ROOM_JOIN_ACK",
  0x34: "ROOM_LEAVE",
  0x35: "ROOM_LEAVE_ACK",
  0x36: "PEER_JOINED",
  0x37: "PEER_LEFT",
  0x38: "ROOM_CLOSED",
  0x39: "PEER_RECONNECTING",
  0x3a: "TOKEN_EXPIRING",
  0xff: "ERROR",
};

const PAYLOAD_TYPE_NAMES: Readonly<Record<number, string>> = {
  0x01: "BINARY",
  0x02: "JSON",
  0x03: "TEXT",
  0x04: "PROTOBUF",
  0x05: "CBOR",
};

/** Whether `b` names a message type. */
export function isMessageType(b: number): b is MessageType {
  return Object.prototype.hasOwnProperty.call(MESSAGE_TYPE_NAMES, b);
}

/** Whether `b` names a payload type. */
export function isPayloadType(b: number): b is PayloadType {
  return Object.prototype.hasOwnProperty.call(PAYLOAD_TYPE_NAMES, b);
}

/** The protocol page's name of a message type (`SIGNAL_OFFER`), or `0x42` for an unknown byte. */
export function messageTypeName(t: number): string {
  return MESSAGE_TYPE_NAMES[t] ?? hexByte(t);
}

/** The upper-case name of a payload type (`JSON`), or `0x09` for an unknown byte. */
export function payloadTypeName(t: number): string {
  return PAYLOAD_TYPE_NAMES[t] ?? hexByte(t);
}

/** `0x0A`-style rendering of a byte, as the server's error messages use. */
export function hexByte(b: number): string {
  return `0x${b.toString(16).toUpperCase().padStart(2, "0")}`;
}

/** The ACK type that answers a request type, if it has one. */
export function ackTypeOf(t: MessageType): MessageType | undefined {
  switch (t) {
    case MessageType.Connect:
      return MessageType.ConnectAck;
    case MessageType.Heartbeat:
      return MessageType.HeartbeatAck;
    case MessageType.Resume:
      return MessageType.ResumeAck;
    case MessageType.TokenRefresh:
      return MessageType.TokenRefreshAck;
    case MessageType.Register:
      return MessageType.RegisterAck;
    case MessageType.Unregister:
      return MessageType.UnregisterAck;
    case MessageType.RoomCreate:
      return MessageType.RoomCreateAck;
    case MessageType.RoomJoin:
      return MessageType.RoomJoinAck;
    case MessageType.RoomLeave:
      return MessageType.RoomLeaveAck;
    default:
      return undefined;
  }
}

/** Whether a frame of type `t` answers a request (an ACK). */
export function isAck(t: number): boolean {
  return (
    t === MessageType.ConnectAck ||
    t === MessageType.HeartbeatAck ||
    t === MessageType.ResumeAck ||
    t === MessageType.RegisterAck ||
    t === MessageType.UnregisterAck ||
    t === MessageType.RoomCreateAck ||
    t === MessageType.RoomJoinAck ||
    t === MessageType.RoomLeaveAck ||
    t === MessageType.TokenRefreshAck
  );
}

// === Payloads ===

/** A JSON value, as carried in `metadata` and `details`. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue };

/** CONNECT (0x01). */
export interface ConnectRequest {
  client_id: string;
  auth_token: string;
  version?: string;
  capabilities?: string[];
  metadata?: JsonValue;
  /** Extension: `true` asks for a resumable session. */
  resume?: boolean;
}

/** CONNECT_ACK (0x02). */
export interface ConnectAck {
  status: number;
  message: string;
  session_id: string;
  server_version: string;
  /** Seconds between the client's heartbeats. */
  heartbeat_interval: number;
  capabilities: string[];
  /** For a CONNECT with `resume: true`: the token RESUME takes the session back with. */
  resume_token?: string;
  /** Seconds a lost session waits for its RESUME. */
  resume_window?: number;
}

/** RESUME (0x06), extension: the first frame of a new connection, instead of CONNECT. */
export interface ResumeRequest {
  client_id: string;
  /** The latest token (from CONNECT_ACK or the last RESUME_ACK). */
  resume_token: string;
  /** How many frames the client received on the session (every frame but RESUME_ACK). */
  last_seq: number;
}

/** RESUME_ACK (0x07), extension. Not counted: the frame after it is `last_seq + 1`. */
export interface ResumeAck {
  status: number;
  message: string;
  session_id: string;
  /** A new token for the next resume. */
  resume_token: string;
  last_seq: number;
  /** Frames the network lost, sent again right after this ACK. */
  replayed: number;
  heartbeat_interval: number;
}

/** PEER_RECONNECTING (0x39), extension: a member's connection was lost; it has `window`
 * seconds to resume before it leaves (PEER_LEFT). */
export interface PeerReconnecting {
  room_id: string;
  client_id: string;
  window: number;
}

/** TOKEN_REFRESH (0x08), extension: a fresh credential for this connection's client. */
export interface TokenRefresh {
  auth_token: string;
}

/** TOKEN_REFRESH_ACK (0x09), extension. */
export interface TokenRefreshAck {
  status: number;
  /** When the fresh credential expires (RFC 3339), if it does. */
  expires_at?: string;
}

/** TOKEN_EXPIRING (0x3A), extension: the connection's credential expires at `expires_at`;
 * a TOKEN_REFRESH before then keeps the connection, else it closes (1008). */
export interface TokenExpiring {
  expires_at: string;
  seconds_left: number;
}

/** HEARTBEAT / PING (0x04). */
export interface Heartbeat {
  /** Client clock, milliseconds since the Unix epoch. */
  timestamp: number;
}

/** HEARTBEAT_ACK / PING_ACK (0x05). */
export interface HeartbeatAck {
  timestamp: number;
  server_time: number;
}

/** REGISTER (0x20). */
export interface RegisterRequest {
  version: string;
  client_id: string;
  auth_token: string;
  room_id?: string | null;
  capabilities?: string[];
  metadata?: JsonValue;
}

/** REGISTER_ACK (0x21). */
export interface RegisterAck {
  version: string;
  status: number;
  message: string;
  client_id: string;
  session_id: string;
  /** The token the server issued, when REGISTER sent an empty `auth_token`. */
  auth_token?: string;
  /** When the registered token expires (RFC 3339), if it does. */
  token_expires_at?: string;
}

/** UNREGISTER (0x22). */
export interface UnregisterRequest {
  version: string;
  client_id: string;
  auth_token: string;
}

/** UNREGISTER_ACK (0x23). */
export interface UnregisterAck {
  version: string;
  status: number;
  message: string;
  client_id: string;
}

/** A member's role in a room. */
export type Role = "sender" | "receiver";

/** ROOM_CREATE (0x30). */
export interface RoomCreateRequest {
  version: string;
  client_id: string;
  auth_token: string;
  room_id?: string;
  role?: Role;
  offer_sdp?: string;
  capabilities?: string[];
  metadata?: JsonValue;
}

/** `connection_info.metadata` of a room ACK. */
export interface ConnectionMetadata {
  session_id: string;
  /** RFC 3339. */
  created_at: string;
  client_id: string;
}

/** `connection_info` of a room ACK. */
export interface ConnectionInfo {
  room_id: string;
  role: Role;
  /** Media backend application id (empty in P2P mode). */
  app_id: string;
  session_id: string;
  status: string;
  metadata: ConnectionMetadata;
}

/** ROOM_CREATE_ACK (0x31). */
export interface RoomCreateAck {
  version: string;
  status: number;
  message: string;
  room_id: string;
  session_id: string;
  app_id: string;
  stun_url: string | null;
  connection_info: ConnectionInfo;
  /** The media backend's answer (SFU mode only). */
  answer_sdp?: string | null;
}

/** ROOM_JOIN (0x32). */
export interface RoomJoinRequest {
  version: string;
  client_id: string;
  auth_token: string;
  room_id: string;
  role?: Role;
  offer_sdp?: string;
  capabilities?: string[];
  metadata?: JsonValue;
}

/** One member listed in ROOM_JOIN_ACK. */
export interface Participant {
  client_id: string;
  role: Role;
  metadata: JsonValue;
  /** RFC 3339. */
  joined_at: string;
}

/** ROOM_JOIN_ACK (0x33). */
export interface RoomJoinAck {
  version: string;
  status: number;
  message: string;
  room_id: string;
  session_id: string;
  app_id: string;
  stun_url: string | null;
  connection_info: ConnectionInfo;
  /** The other members, the joiner excluded. */
  participants: Participant[];
  /** The sender's stored offer (P2P) or the SFU's offer, if any. */
  offer_sdp: string | null;
  /** Set when the member list did not fit one frame. */
  participants_truncated?: boolean;
}

/** ROOM_LEAVE (0x34). */
export interface RoomLeaveRequest {
  version: string;
  client_id: string;
  auth_token: string;
  room_id: string;
  reason?: string;
}

/** ROOM_LEAVE_ACK (0x35). */
export interface RoomLeaveAck {
  version: string;
  status: number;
  message: string;
  room_id: string;
  client_id: string;
}

/** PEER_JOINED (0x36). */
export interface PeerJoined {
  room_id: string;
  client_id: string;
  role: Role;
  metadata: JsonValue;
}

/** PEER_LEFT (0x37). */
export interface PeerLeft {
  room_id: string;
  client_id: string;
  reason: string;
}

/** ROOM_CLOSED (0x38). */
export interface RoomClosed {
  room_id: string;
  reason: string;
}

/** ERROR (0xFF). */
export interface ErrorPayload {
  /** HTTP-style status: 400, 401, 403, 404, 409, 413, 429, 500, 503. */
  error_code: number;
  error_message: string;
  /** `request_type` always; other keys by error. */
  details?: JsonObject;
}

/**
 * SIGNAL_OFFER / SIGNAL_ANSWER / SIGNAL_ICE_CANDIDATE (0x10–0x12), both directions.
 * Fields the server does not interpret reach the target unchanged.
 */
export interface SignalPayload {
  target_client_id?: string;
  room_id?: string;
  sdp?: string;
  /** A candidate line, or an object as browsers produce. */
  candidate?: string | JsonObject;
  sdp_mid?: string;
  sdp_m_line_index?: number;
  /** Stamped by the server on delivery; ignored when a client sends it. */
  from_client_id?: string;
  [extra: string]: JsonValue | undefined;
}
