/**
 * Everything that can go wrong for a client, as one class hierarchy rooted at
 * {@link SignalClientError}, so callers can tell a server's refusal from a timeout or a
 * dropped socket with `instanceof`.
 */

import type { ErrorPayload, JsonObject } from "./types.js";

/** The base class of every error this package throws. */
export class SignalClientError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }

  override name = "SignalClientError";
}

/** The server answered with an ERROR frame. */
export class SignalError extends SignalClientError {
  override name = "SignalError";
  /** HTTP-style status: 400, 401, 403, 404, 409, 413, 429, 500, 503. */
  readonly code: number;
  /** The server's `details` (`request_type`, `timestamp`, and keys by error). */
  readonly details: JsonObject;
  /** UUID of the ERROR frame: the request's, for an answer to a request. */
  readonly id: string;
  /** The server's `error_message`, without the `server error NNN:` prefix. */
  readonly serverMessage: string;

  constructor(payload: ErrorPayload, id: string) {
    super(`server error ${payload.error_code}: ${payload.error_message}`);
    this.code = payload.error_code;
    this.details = payload.details ?? {};
    this.id = id;
    this.serverMessage = payload.error_message;
  }

  /** The name of the request type the error answers (`ROOM_JOIN`), if the server said. */
  get requestType(): string | null {
    const t = this.details["request_type"];
    return typeof t === "string" ? t : null;
  }
}

/** A request got no answer in time. */
export class RequestTimeoutError extends SignalClientError {
  override name = "RequestTimeoutError";
  constructor(
    /** The request type's name (`ROOM_JOIN`). */
    readonly requestType: string,
    /** The request's UUID. */
    readonly id: string,
    /** How long it waited, in milliseconds. */
    readonly timeoutMs: number,
  ) {
    super(`no answer to ${requestType} within ${timeoutMs} ms`);
  }
}

/** The connection closed (or never opened) before the operation could finish. */
export class ConnectionClosedError extends SignalClientError {
  override name = "ConnectionClosedError";
  constructor(
    /** WebSocket close code (1006 when the socket dropped without a close frame). */
    readonly code: number,
    /** Close reason sent by the server, if any. */
    readonly reason: string,
    message?: string,
  ) {
    super(message ?? `connection closed (${code}${reason ? `: ${reason}` : ""})`);
  }
}

/** The server sent something this client cannot make sense of. */
export class ProtocolError extends SignalClientError {
  override name = "ProtocolError";
}

/** The precise fault of a frame that could not be decoded or encoded. */
export type FrameErrorKind =
  | { kind: "empty" }
  | { kind: "bad-start-byte"; byte: number }
  | { kind: "truncated"; received: number }
  | { kind: "unknown-message-type"; byte: number }
  | { kind: "unknown-payload-type"; byte: number }
  | { kind: "length-mismatch"; declared: number; actual: number }
  | { kind: "payload-too-large"; length: number };

/**
 * A frame that could not be decoded (or a payload too large to encode). The message is the
 * same text the server uses for the same fault.
 */
export class FrameError extends SignalClientError {
  override name = "FrameError";
  constructor(
    /** What exactly was wrong. */
    readonly fault: FrameErrorKind,
    message: string,
    /** The frame's UUID, when at least 18 bytes arrived. */
    readonly id: string | null,
    /** The raw message type byte, when present. */
    readonly messageType: number | null,
  ) {
    super(message);
  }
}

/** A payload that could not be encoded or decoded. */
export class PayloadError extends SignalClientError {
  override name = "PayloadError";
}
