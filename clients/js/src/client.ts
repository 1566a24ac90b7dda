/**
 * {@link SignalClient}: a connection to a signal-manager server over the binary protocol.
 *
 * Requests and their answers are matched by frame UUID, each request with its own
 * timeout; an ERROR answer rejects with a {@link SignalError}. Server-initiated frames
 * (PEER_JOINED, relayed offers, answers and candidates, …) arrive as typed events. A
 * heartbeat runs at the interval the server announced in CONNECT_ACK.
 *
 * ```ts
 * const client = await SignalClient.connect("ws://127.0.0.1:8080/", {
 *   clientId: "test_client_1",
 *   token: "test_token_1",
 * });
 * client.on("offer", (o) => console.log("offer from", o.from, o.sdp));
 * await client.register();
 * await client.joinOrCreate("demo");
 * ```
 */

import { Emitter, type Unsubscribe } from "./emitter.js";
import {
  ConnectionClosedError,
  ProtocolError,
  RequestTimeoutError,
  SignalClientError,
  SignalError,
} from "./errors.js";
import { decodeFrame, encodeFrame, randomUuid, type Frame } from "./frame.js";
import { decodePayload, encodePayload, type StructuredPayloadType } from "./payload.js";
import {
  ackTypeOf,
  isAck,
  MessageType,
  messageTypeName,
  PayloadType,
  PROTOCOL_VERSION,
  type ConnectAck,
  type ConnectRequest,
  type ErrorPayload,
  type HeartbeatAck,
  type JsonValue,
  type PeerJoined,
  type PeerLeft,
  type PeerReconnecting,
  type RegisterAck,
  type ResumeAck,
  type ResumeRequest,
  type Role,
  type RoomClosed,
  type RoomCreateAck,
  type RoomJoinAck,
  type RoomLeaveAck,
  type SignalPayload,
  type TokenExpiring,
  type TokenRefreshAck,
  type UnregisterAck,
} from "./types.js";

// === WebSocket seam ===

/** The part of the WHATWG `WebSocket` this client uses (browsers, Node 22+, the `ws` package). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "open" | "message" | "close" | "error", listener: (event: any) => void): void;
}

/** A `WebSocket` constructor. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

const WS_OPEN = 1;

// === Options and results ===

/** Options of {@link SignalClient.connect}. */
export interface ConnectOptions {
  /** The client id to authenticate as. */
  clientId: string;
  /** API key token, HS256 JWT, or the client's registered token. Also used as the
   * `auth_token` of later requests unless they are given another. */
  token: string;
  /** Payload encoding of this connection (default `json`). Events arrive in it too. */
  payload?: "json" | "cbor";
  /** How long a request waits for its answer, in milliseconds (default 10000). Also bounds
   * opening the socket and CONNECT. */
  timeoutMs?: number;
  /** Send HEARTBEAT at the server's `heartbeat_interval` (default true). */
  heartbeat?: boolean;
  /** Protocol version announced (default `1.0.0`). */
  version?: string;
  /** Capabilities announced in CONNECT. */
  capabilities?: string[];
  /** Metadata sent in CONNECT. */
  metadata?: JsonValue;
  /** The WebSocket implementation (default: the global `WebSocket`). On Node 20, pass the
   * `ws` package's export, or run Node with `--experimental-websocket`. */
  WebSocket?: WebSocketConstructor;
  /** Ask for a resumable session, and resume it by itself when the connection is lost:
   * `true`, or how to retry. The session's rooms, and every frame sent to it meanwhile,
   * survive (see the protocol's "Resume"). */
  resume?: boolean | ResumeOptions;
}

/** How a resumable client retries after a lost connection. */
export interface ResumeOptions {
  /** The first wait, in milliseconds (default 100); doubled after each failed try. */
  firstDelayMs?: number;
  /** The longest wait between tries (default 5000). */
  maxDelayMs?: number;
  /** Give up after this long (default: the server's `resume_window`). */
  giveUpAfterMs?: number;
}

/** Handed to `resumed` listeners. */
export interface ResumedInfo {
  /** Frames the network had lost, sent again (they arrive as ordinary events next). */
  replayed: number;
}

/** Per-request options. */
export interface RequestOptions {
  /** Overrides the client's timeout for this request. */
  timeoutMs?: number;
}

/** Fields shared by the room requests. */
export interface RoomRequestOptions extends RequestOptions {
  /** `auth_token` of the request (default: the token given to `connect`). */
  token?: string;
  /** `sender` or `receiver`. */
  role?: Role;
  /** Capabilities of this member. */
  capabilities?: string[];
  /** Member metadata (passed to other members in PEER_JOINED) or, for ROOM_CREATE, room
   * metadata (`max_participants` caps the room). */
  metadata?: JsonValue;
}

/** Options of {@link SignalClient.createRoom}. */
export interface CreateRoomOptions extends RoomRequestOptions {
  /** A custom room id; the server generates one when absent. */
  roomId?: string;
  /** The creator's offer, handed to each joiner in ROOM_JOIN_ACK. */
  offerSdp?: string;
}

/** What {@link SignalClient.joinOrCreate} did. */
export type JoinOrCreateResult =
  | { created: true; roomId: string; ack: RoomCreateAck }
  | { created: false; roomId: string; ack: RoomJoinAck };

/** An ICE candidate, shaped like the browser's `RTCIceCandidateInit`. */
export interface IceCandidateInit {
  candidate?: string;
  sdpMid?: string | null;
  sdpMLineIndex?: number | null;
  usernameFragment?: string | null;
}

/** A relayed SIGNAL_OFFER or SIGNAL_ANSWER. */
export interface SdpSignal {
  /** The frame UUID, the same one the sender used. */
  id: string;
  /** The sender, as stamped by the server. */
  from: string;
  /** The room the signal belongs to, if the sender named one. */
  roomId: string | null;
  /** The SDP (empty if the sender sent none). */
  sdp: string;
  /** The whole payload, extra fields included. */
  payload: SignalPayload;
}

/** A relayed SIGNAL_ICE_CANDIDATE. */
export interface CandidateSignal {
  /** The frame UUID, the same one the sender used. */
  id: string;
  /** The sender, as stamped by the server. */
  from: string;
  /** The room the signal belongs to, if the sender named one. */
  roomId: string | null;
  /** The candidate, ready for `RTCPeerConnection.addIceCandidate`; `null` when the
   * payload carried none (end of candidates). */
  candidate: IceCandidateInit | null;
  /** The whole payload, extra fields included. */
  payload: SignalPayload;
}

/** How the connection ended. */
export interface CloseInfo {
  /** WebSocket close code (1006 when the socket dropped without a close frame). */
  code: number;
  /** Close reason, if any. */
  reason: string;
}

/** The events of a {@link SignalClient}, with the type of their argument. */
export interface SignalClientEvents {
  /** Another member joined a room this client is in. */
  peerJoined: PeerJoined;
  /** Another member left a room this client is in. */
  peerLeft: PeerLeft;
  /** A room this client was in terminated; the client is no longer a member. */
  roomClosed: RoomClosed;
  /** A peer sent this client an offer. */
  offer: SdpSignal;
  /** A peer sent this client an answer. */
  answer: SdpSignal;
  /** A peer sent this client an ICE candidate. */
  iceCandidate: CandidateSignal;
  /** An error no request is waiting for: an ERROR answering a signal (signals have no
   * ACK), an unsolicited ERROR (session replaced), an undecodable frame, a failed heartbeat. */
  error: SignalClientError;
  /** Another member's connection was lost; it may resume within `window` seconds. */
  peerReconnecting: PeerReconnecting;
  /** This connection's credential expires at `expires_at`: call
   * {@link SignalClient.refreshToken} with a fresh one before then, or it closes. */
  tokenExpiring: TokenExpiring;
  /** A resumable client lost its connection and is reconnecting. Pending requests have
   * been rejected; signals sent meanwhile throw. */
  reconnecting: CloseInfo;
  /** A resumable client took its session back on a new connection. */
  resumed: ResumedInfo;
  /** The connection closed for good (a resumable client: it could not resume). Pending
   * requests have been rejected. */
  close: CloseInfo;
  /** Every frame received, before it is matched or dispatched (for logging). */
  frame: Frame;
}

interface Pending {
  expect: MessageType | undefined;
  resolve: (payload: unknown) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

// === SignalClient ===

/** A connection to a signal-manager server. Create one with {@link SignalClient.connect}. */
export class SignalClient {
  /** The authenticated client id. */
  readonly clientId: string;
  /** Payload type of this connection's requests. */
  readonly payloadType: StructuredPayloadType;
  /** Default per-request timeout, in milliseconds. */
  timeoutMs: number;

  #ws: WebSocketLike;
  #token: string;
  #version: string;
  #events = new Emitter<SignalClientEvents>();
  #pending = new Map<string, Pending>();
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #closed: CloseInfo | undefined;
  #connectAck: ConnectAck | undefined;
  #opened: Promise<void>;
  #url = "";
  #options: ConnectOptions;
  /** Frames received on the session: every one but RESUME_ACK (the last sequence number). */
  #received = 0;
  #resumeToken: string | undefined;
  #reconnecting = false;
  #closedByUser = false;

  private constructor(ws: WebSocketLike, options: ConnectOptions) {
    this.#ws = ws;
    this.#options = options;
    this.clientId = options.clientId;
    this.#token = options.token;
    this.#version = options.version ?? PROTOCOL_VERSION;
    this.payloadType = options.payload === "cbor" ? PayloadType.Cbor : PayloadType.Json;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    ws.binaryType = "arraybuffer";
    this.#opened = this.#attach(ws);
  }

  /** Listens to `ws`; events of a socket that is no longer this client's are ignored.
   * Resolves once it opens. */
  #attach(ws: WebSocketLike): Promise<void> {
    ws.binaryType = "arraybuffer";
    const opened = new Promise<void>((resolve, reject) => {
      ws.addEventListener("open", () => resolve());
      ws.addEventListener("close", (ev: { code?: number; reason?: string }) => {
        reject(new ConnectionClosedError(ev.code ?? 1006, ev.reason ?? "", "the WebSocket could not be opened"));
      });
    });
    // Nobody may be awaiting it when the socket closes later; that is not an error.
    opened.catch(() => {});
    ws.addEventListener("message", (ev: { data: unknown }) => {
      if (ws === this.#ws) this.#onMessage(ev.data);
    });
    ws.addEventListener("close", (ev: { code?: number; reason?: string }) => {
      if (ws === this.#ws) this.#onSocketClose({ code: ev.code ?? 1006, reason: ev.reason ?? "" });
    });
    // Browsers fire `error` without details and always follow it with `close`.
    ws.addEventListener("error", () => {});
    return opened;
  }

  /**
   * Opens a WebSocket to `url` (e.g. `ws://127.0.0.1:8080/`), sends CONNECT and waits for
   * CONNECT_ACK. Rejects with a {@link SignalError} (401 for bad credentials), a
   * {@link RequestTimeoutError} or a {@link ConnectionClosedError}.
   */
  static async connect(url: string, options: ConnectOptions): Promise<SignalClient> {
    const Ctor =
      options.WebSocket ??
      (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ctor) {
      throw new SignalClientError(
        "no WebSocket implementation: pass one as options.WebSocket (on Node 20, the `ws` package, or run node with --experimental-websocket)",
      );
    }
    let ws: WebSocketLike;
    try {
      ws = new Ctor(url);
    } catch (e) {
      throw new SignalClientError(`cannot open a WebSocket to ${url}: ${(e as Error).message ?? e}`, { cause: e });
    }
    const client = new SignalClient(ws, options);
    client.#url = url;
    try {
      await client.#withTimeout(client.#opened, "opening the WebSocket");
      const request: ConnectRequest = {
        client_id: options.clientId,
        auth_token: options.token,
        version: client.#version,
        capabilities: options.capabilities ?? ["websocket", "heartbeat", "webrtc"],
        metadata: options.metadata ?? defaultMetadata(),
      };
      if (options.resume) request.resume = true;
      const ack = await client.request<ConnectAck>(MessageType.Connect, request);
      client.#connectAck = ack;
      client.#resumeToken = ack.resume_token;
      if (options.heartbeat !== false) client.#startHeartbeat(ack.heartbeat_interval);
      return client;
    } catch (e) {
      client.close(1000, "connect failed");
      throw e;
    }
  }

  /** The server's CONNECT_ACK: session id, server version, heartbeat interval. */
  get session(): ConnectAck {
    if (!this.#connectAck) throw new SignalClientError("not connected yet");
    return this.#connectAck;
  }

  /** Whether the socket is open. */
  get isOpen(): boolean {
    return this.#closed === undefined && this.#ws.readyState === WS_OPEN;
  }

  /** Whether the session is resumable (the server gave a `resume_token`). */
  get isResumable(): boolean {
    return this.#resumeToken !== undefined;
  }

  /** Frames received on the session so far: the `last_seq` a RESUME sends. */
  get received(): number {
    return this.#received;
  }

  /** How the connection ended, once it has. */
  get closeInfo(): CloseInfo | undefined {
    return this.#closed;
  }

  // --- events ---

  /** Calls `listener` for every `event`; returns a function that removes it. */
  on<K extends keyof SignalClientEvents & string>(
    event: K,
    listener: (arg: SignalClientEvents[K]) => void,
  ): Unsubscribe {
    return this.#events.on(event, listener);
  }

  /** Calls `listener` for the next `event` only. */
  once<K extends keyof SignalClientEvents & string>(
    event: K,
    listener: (arg: SignalClientEvents[K]) => void,
  ): Unsubscribe {
    return this.#events.once(event, listener);
  }

  /** Removes a listener added with {@link on}. */
  off<K extends keyof SignalClientEvents & string>(
    event: K,
    listener: (arg: SignalClientEvents[K]) => void,
  ): void {
    this.#events.off(event, listener);
  }

  // --- low level ---

  /**
   * Sends a request and resolves with its ACK's payload. An ERROR answer rejects with a
   * {@link SignalError}, no answer within the timeout with a {@link RequestTimeoutError},
   * a closed connection with a {@link ConnectionClosedError}.
   */
  request<T>(type: MessageType, payload: unknown, options: RequestOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    return new Promise<T>((resolve, reject) => {
      const id = randomUuid();
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new RequestTimeoutError(messageTypeName(type), id, timeoutMs));
      }, timeoutMs);
      // Registered before sending, so even an answer delivered at once finds its waiter.
      this.#pending.set(id, {
        expect: ackTypeOf(type),
        resolve: resolve as (payload: unknown) => void,
        reject,
        timer,
      });
      try {
        this.send(type, payload, id);
      } catch (e) {
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(e);
      }
    });
  }

  /**
   * Sends one frame without waiting for an answer; returns its UUID. Throws a
   * {@link ConnectionClosedError} if the socket is not open.
   */
  send(type: MessageType, payload: unknown, id: string = randomUuid()): string {
    if (!this.isOpen) {
      const c = this.#closed;
      throw new ConnectionClosedError(c?.code ?? 1006, c?.reason ?? "", "the connection is not open");
    }
    const bytes = encodeFrame(type, id, this.payloadType, encodePayload(this.payloadType, payload));
    this.#ws.send(bytes);
    return id;
  }

  // --- session ---

  /** HEARTBEAT: resolves with the server's clock. */
  heartbeat(options?: RequestOptions): Promise<HeartbeatAck> {
    return this.request(MessageType.Heartbeat, { timestamp: Date.now() }, options);
  }

  /** TOKEN_REFRESH (extension): hands the server a fresh credential for this connection
   * before the one it connected with expires (the `tokenExpiring` event says when). */
  refreshToken(authToken: string, options?: RequestOptions): Promise<TokenRefreshAck> {
    return this.request(MessageType.TokenRefresh, { auth_token: authToken }, options);
  }

  /**
   * REGISTER: stores this client (its token hashed) so it can later connect with that
   * token. A second registration of the same id gets a {@link SignalError} 409.
   */
  register(
    options: { token?: string; roomId?: string; capabilities?: string[]; metadata?: JsonValue } & RequestOptions = {},
  ): Promise<RegisterAck> {
    return this.request(
      MessageType.Register,
      {
        ...this.#base(options.token),
        room_id: options.roomId,
        capabilities: options.capabilities ?? ["webrtc"],
        metadata: options.metadata ?? defaultMetadata(),
      },
      options,
    );
  }

  /** UNREGISTER: deletes this client's registration and leaves its rooms. */
  unregister(options: { token?: string } & RequestOptions = {}): Promise<UnregisterAck> {
    return this.request(MessageType.Unregister, this.#base(options.token), options);
  }

  // --- rooms ---

  /** ROOM_CREATE: creates a room (with a generated id unless `roomId` is given). */
  createRoom(options: CreateRoomOptions = {}): Promise<RoomCreateAck> {
    return this.request(
      MessageType.RoomCreate,
      {
        ...this.#base(options.token),
        room_id: options.roomId,
        role: options.role,
        offer_sdp: options.offerSdp,
        capabilities: options.capabilities,
        metadata: options.metadata,
      },
      options,
    );
  }

  /** ROOM_JOIN: joins an existing room (as `receiver` unless `role` says otherwise). */
  joinRoom(roomId: string, options: RoomRequestOptions = {}): Promise<RoomJoinAck> {
    return this.request(
      MessageType.RoomJoin,
      {
        ...this.#base(options.token),
        room_id: roomId,
        role: options.role,
        capabilities: options.capabilities,
        metadata: options.metadata,
      },
      options,
    );
  }

  /**
   * Joins `roomId`, creating it if it does not exist. When two clients race to create
   * the same room, the loser joins the winner's room.
   */
  async joinOrCreate(roomId: string, options: RoomRequestOptions = {}): Promise<JoinOrCreateResult> {
    try {
      const ack = await this.joinRoom(roomId, options);
      return { created: false, roomId: ack.room_id, ack };
    } catch (e) {
      if (!(e instanceof SignalError && e.code === 404)) throw e;
    }
    try {
      const ack = await this.createRoom({ ...options, roomId });
      return { created: true, roomId: ack.room_id, ack };
    } catch (e) {
      if (!(e instanceof SignalError && e.code === 409)) throw e;
    }
    const ack = await this.joinRoom(roomId, options);
    return { created: false, roomId: ack.room_id, ack };
  }

  /** ROOM_LEAVE. */
  leaveRoom(roomId: string, options: { token?: string; reason?: string } & RequestOptions = {}): Promise<RoomLeaveAck> {
    return this.request(
      MessageType.RoomLeave,
      { ...this.#base(options.token), room_id: roomId, reason: options.reason },
      options,
    );
  }

  // --- signals ---

  /**
   * Sends a SIGNAL_OFFER, SIGNAL_ANSWER or SIGNAL_ICE_CANDIDATE; returns its UUID. Signals
   * have no ACK: a failure (target not found, not in the room) arrives later as an
   * `error` event whose {@link SignalError.id} is this UUID.
   */
  signal(
    type: typeof MessageType.SignalOffer | typeof MessageType.SignalAnswer | typeof MessageType.SignalIceCandidate,
    payload: SignalPayload,
  ): string {
    return this.send(type, payload);
  }

  /** Sends an SDP offer to `target`. */
  sendOffer(target: string, sdp: string, roomId?: string): string {
    return this.signal(MessageType.SignalOffer, { target_client_id: target, room_id: roomId, sdp });
  }

  /** Sends an SDP answer to `target`. */
  sendAnswer(target: string, sdp: string, roomId?: string): string {
    return this.signal(MessageType.SignalAnswer, { target_client_id: target, room_id: roomId, sdp });
  }

  /** Sends an ICE candidate (as `RTCPeerConnection`'s `icecandidate` event gives it). */
  sendCandidate(target: string, candidate: IceCandidateInit, roomId?: string): string {
    return this.signal(MessageType.SignalIceCandidate, {
      target_client_id: target,
      room_id: roomId,
      ...candidateToPayload(candidate),
    });
  }

  // --- closing ---

  /**
   * DISCONNECT: the server leaves this client's rooms and closes the connection. Resolves
   * once it has closed (or after `timeoutMs`, default 5000, closing it from this side).
   */
  async disconnect(options: RequestOptions = {}): Promise<CloseInfo> {
    if (this.#closed) return this.#closed;
    const closed = new Promise<CloseInfo>((resolve) => this.once("close", resolve));
    try {
      this.send(MessageType.Disconnect, {});
    } catch {
      // Already closing: wait for it below.
    }
    const timeoutMs = options.timeoutMs ?? 5_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), timeoutMs);
    });
    const info = await Promise.race([closed, late]);
    clearTimeout(timer);
    if (info) return info;
    this.close(1000, "disconnect");
    return this.#closed ?? { code: 1000, reason: "disconnect" };
  }

  /** Closes the WebSocket from this side without DISCONNECT (and without resuming). */
  close(code = 1000, reason = ""): void {
    this.#closedByUser = true;
    this.#stopHeartbeat();
    try {
      this.#ws.close(code, reason);
    } catch {
      // Closing an already closed socket is not an error worth reporting.
    }
  }

  // --- internals ---

  #base(token: string | undefined): { version: string; client_id: string; auth_token: string } {
    return { version: this.#version, client_id: this.clientId, auth_token: token ?? this.#token };
  }

  #withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new RequestTimeoutError(what, "", this.timeoutMs)),
        this.timeoutMs,
      );
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }

  #startHeartbeat(intervalSeconds: number): void {
    const ms = Math.max(1, intervalSeconds) * 1000;
    this.#heartbeat = setInterval(() => {
      if (!this.isOpen) return;
      this.heartbeat().catch((e: unknown) => {
        if (!this.#closed) this.#events.emit("error", asClientError(e));
      });
    }, ms);
    // A heartbeat alone must not keep a Node process alive.
    (this.#heartbeat as { unref?: () => void }).unref?.();
  }

  #stopHeartbeat(): void {
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }

  #onMessage(data: unknown): void {
    if (typeof data === "string") {
      this.#events.emit("error", new ProtocolError("unexpected WebSocket text message from the server"));
      return;
    }
    if (!(data instanceof ArrayBuffer) && !ArrayBuffer.isView(data)) {
      this.#events.emit("error", new ProtocolError("unexpected WebSocket message type (set binaryType to arraybuffer)"));
      return;
    }
    let frame: Frame;
    try {
      frame = decodeFrame(data);
    } catch (e) {
      this.#received += 1;
      this.#events.emit("error", asClientError(e));
      return;
    }
    if (frame.type !== MessageType.ResumeAck) this.#received += 1;
    this.#events.emit("frame", frame);
    const answers = isAck(frame.type) || frame.type === MessageType.Error;
    const pending = answers ? this.#pending.get(frame.id) : undefined;
    if (pending) {
      this.#pending.delete(frame.id);
      clearTimeout(pending.timer);
      this.#settle(pending, frame);
      return;
    }
    this.#dispatch(frame);
  }

  #settle(pending: Pending, frame: Frame): void {
    try {
      const payload = decodePayload(frame.payloadType, frame.payload);
      if (frame.type === MessageType.Error) {
        pending.reject(new SignalError(payload as ErrorPayload, frame.id));
      } else if (pending.expect !== undefined && frame.type !== pending.expect) {
        pending.reject(
          new ProtocolError(
            `expected ${messageTypeName(pending.expect)} in answer, got ${messageTypeName(frame.type)}`,
          ),
        );
      } else {
        pending.resolve(payload);
      }
    } catch (e) {
      pending.reject(asClientError(e));
    }
  }

  #dispatch(frame: Frame): void {
    let payload: unknown;
    try {
      payload = decodePayload(frame.payloadType, frame.payload);
    } catch (e) {
      this.#events.emit("error", asClientError(e));
      return;
    }
    switch (frame.type) {
      case MessageType.PeerJoined:
        this.#events.emit("peerJoined", payload as PeerJoined);
        break;
      case MessageType.PeerLeft:
        this.#events.emit("peerLeft", payload as PeerLeft);
        break;
      case MessageType.RoomClosed:
        this.#events.emit("roomClosed", payload as RoomClosed);
        break;
      case MessageType.PeerReconnecting:
        this.#events.emit("peerReconnecting", payload as PeerReconnecting);
        break;
      case MessageType.TokenExpiring:
        this.#events.emit("tokenExpiring", payload as TokenExpiring);
        break;
      case MessageType.SignalOffer:
      case MessageType.SignalAnswer: {
        const p = payload as SignalPayload;
        const signal: SdpSignal = {
          id: frame.id,
          from: p.from_client_id ?? "",
          roomId: p.room_id ?? null,
          sdp: p.sdp ?? "",
          payload: p,
        };
        this.#events.emit(frame.type === MessageType.SignalOffer ? "offer" : "answer", signal);
        break;
      }
      case MessageType.SignalIceCandidate: {
        const p = payload as SignalPayload;
        this.#events.emit("iceCandidate", {
          id: frame.id,
          from: p.from_client_id ?? "",
          roomId: p.room_id ?? null,
          candidate: payloadToCandidate(p),
          payload: p,
        });
        break;
      }
      case MessageType.Error:
        this.#events.emit("error", new SignalError(payload as ErrorPayload, frame.id));
        break;
      default:
        // An ACK whose request already timed out, or a type a newer server sends.
        break;
    }
  }

  /** The current socket closed: resume, or end. */
  #onSocketClose(info: CloseInfo): void {
    if (this.#reconnecting) {
      // A try of the reconnect loop failed: its request (if any) fails with it.
      this.#rejectPending(info);
      return;
    }
    // Closed on purpose by the server (1000: DISCONNECT, a resume elsewhere; 1008:
    // replaced, refused) or by this side: no resume.
    const resumable =
      this.#resumeToken !== undefined && !this.#closedByUser && info.code !== 1000 && info.code !== 1008;
    if (!resumable) {
      this.#onClose(info);
      return;
    }
    this.#stopHeartbeat();
    this.#rejectPending(info);
    this.#reconnecting = true;
    this.#events.emit("reconnecting", info);
    void this.#resume(info);
  }

  /** Reconnects with backoff and sends RESUME until the session is back or given up. */
  async #resume(lost: CloseInfo): Promise<void> {
    const o: ResumeOptions = typeof this.#options.resume === "object" ? this.#options.resume : {};
    const window = (this.#connectAck?.resume_window ?? 30) * 1000;
    const giveUp = Date.now() + (o.giveUpAfterMs ?? window);
    let delay = o.firstDelayMs ?? 100;
    const Ctor = this.#options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    for (;;) {
      await new Promise((r) => setTimeout(r, delay));
      if (this.#closedByUser || !Ctor) break;
      let ws: WebSocketLike;
      try {
        ws = new Ctor(this.#url);
      } catch {
        break;
      }
      this.#ws = ws;
      try {
        await this.#withTimeout(this.#attach(ws), "opening the WebSocket");
        const request: ResumeRequest = {
          client_id: this.clientId,
          resume_token: this.#resumeToken ?? "",
          last_seq: this.#received,
        };
        const ack = await this.request<ResumeAck>(MessageType.Resume, request);
        this.#resumeToken = ack.resume_token;
        this.#reconnecting = false;
        if (this.#options.heartbeat !== false) this.#startHeartbeat(ack.heartbeat_interval);
        this.#events.emit("resumed", { replayed: ack.replayed });
        // It may have closed while the listeners ran.
        if (ws.readyState !== WS_OPEN) this.#onSocketClose({ code: 1006, reason: "" });
        return;
      } catch (e) {
        try {
          ws.close();
        } catch {
          // Already closed.
        }
        if (e instanceof SignalError) {
          this.#events.emit("error", e);
          break;
        }
        if (Date.now() + delay > giveUp) break;
        delay = Math.min(delay * 2, o.maxDelayMs ?? 5_000);
      }
    }
    this.#reconnecting = false;
    this.#onClose(lost);
  }

  #rejectPending(info: CloseInfo): void {
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new ConnectionClosedError(info.code, info.reason));
      this.#pending.delete(id);
    }
  }

  #onClose(info: CloseInfo): void {
    if (this.#closed) return;
    this.#closed = info;
    this.#stopHeartbeat();
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new ConnectionClosedError(info.code, info.reason));
      this.#pending.delete(id);
    }
    this.#events.emit("close", info);
  }
}

/** `SignalClient.connect`, as a function. */
export function connect(url: string, options: ConnectOptions): Promise<SignalClient> {
  return SignalClient.connect(url, options);
}

// === Candidates ===

/** The signal payload fields of an ICE candidate. */
export function candidateToPayload(c: IceCandidateInit): SignalPayload {
  const out: SignalPayload = { candidate: c.candidate ?? "" };
  if (c.sdpMid != null) out.sdp_mid = c.sdpMid;
  if (c.sdpMLineIndex != null) out.sdp_m_line_index = c.sdpMLineIndex;
  if (c.usernameFragment != null) out.username_fragment = c.usernameFragment;
  return out;
}

/**
 * The ICE candidate of a signal payload. Accepts this client's shape (a candidate line
 * with `sdp_mid` / `sdp_m_line_index` beside it) and the browser shape other clients send
 * (`candidate: {candidate, sdpMid, sdpMLineIndex}`).
 */
export function payloadToCandidate(p: SignalPayload): IceCandidateInit | null {
  const c = p.candidate;
  if (c === undefined || c === null) return null;
  if (typeof c === "string") {
    return {
      candidate: c,
      sdpMid: p.sdp_mid ?? null,
      sdpMLineIndex: p.sdp_m_line_index ?? null,
      usernameFragment: typeof p["username_fragment"] === "string" ? p["username_fragment"] : null,
    };
  }
  const str = (v: unknown): string | null => (typeof v === "string" ? v : null);
  const num = (v: unknown): number | null => (typeof v === "number" ? v : null);
  return {
    candidate: str(c["candidate"]) ?? "",
    sdpMid: str(c["sdpMid"]) ?? str(c["sdp_mid"]) ?? p.sdp_mid ?? null,
    sdpMLineIndex: num(c["sdpMLineIndex"]) ?? num(c["sdp_m_line_index"]) ?? p.sdp_m_line_index ?? null,
    usernameFragment: str(c["usernameFragment"]) ?? str(c["username_fragment"]),
  };
}

// === helpers ===

function defaultMetadata(): JsonValue {
  const nav = (globalThis as { navigator?: { userAgent?: string } }).navigator;
  return {
    platform: nav?.userAgent && typeof (globalThis as { document?: unknown }).document !== "undefined" ? "web" : "js",
    client: "@signal-manager/client",
    ...(nav?.userAgent ? { userAgent: nav.userAgent } : {}),
  };
}

function asClientError(e: unknown): SignalClientError {
  if (e instanceof SignalClientError) return e;
  return new SignalClientError(e instanceof Error ? e.message : String(e), { cause: e });
}
