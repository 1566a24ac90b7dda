/**
 * The binary frame: `[0xAA][type u8][uuid 16][payload_type u8][length u16 BE][payload]`.
 *
 * {@link decodeFrame} checks every header field against the bytes actually received and
 * throws a {@link FrameError} whose message is the server's own text for the same fault,
 * so a frame this client refuses is one the server would refuse too.
 */

import { FrameError, type FrameErrorKind } from "./errors.js";
import {
  hexByte,
  isMessageType,
  isPayloadType,
  type MessageType,
  type PayloadType,
} from "./types.js";

/** Every frame starts with this byte. */
export const START_BYTE = 0xaa;
/** Header length: start, type, 16-byte UUID, payload type, u16 length. */
export const FRAME_HEADER_LEN = 21;
/** The largest payload the u16 length field can describe. */
export const MAX_PAYLOAD_LEN = 0xffff;
/** The all-zero UUID, carried by errors about frames too short to hold one. */
export const NIL_UUID = "00000000-0000-0000-0000-000000000000";

/** A decoded frame. `payload` is a view into the received buffer (no copy). */
export interface Frame {
  /** Message type. */
  type: MessageType;
  /** Message UUID, lower-case with dashes. */
  id: string;
  /** How `payload` is encoded. */
  payloadType: PayloadType;
  /** Raw payload bytes. */
  payload: Uint8Array;
}

// === UUIDs ===

const UUID_RE = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;

/** A random (version 4) UUID. Uses `crypto.getRandomValues`, which, unlike
 * `crypto.randomUUID`, also exists on pages served over plain HTTP. */
export function randomUuid(): string {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return uuidToString(b);
}

/** `"550e8400-e29b-…"` (dashes optional, any case) → its 16 bytes. */
export function uuidToBytes(uuid: string): Uint8Array {
  if (!UUID_RE.test(uuid)) {
    throw new TypeError(`not a UUID: ${JSON.stringify(uuid)}`);
  }
  const hex = uuid.replace(/-/g, "");
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) {
    out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  }
  return out;
}

/** 16 bytes → `"550e8400-e29b-41d4-a716-446655440000"`. */
export function uuidToString(bytes: Uint8Array): string {
  if (bytes.length !== 16) {
    throw new TypeError(`a UUID is 16 bytes, got ${bytes.length}`);
  }
  let h = "";
  for (const b of bytes) h += b.toString(16).padStart(2, "0");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// === Encoding ===

/**
 * Encodes one frame. `payload` is the already-encoded payload (see `encodePayload`).
 * Throws a {@link FrameError} when the payload exceeds 65535 bytes.
 */
export function encodeFrame(
  type: MessageType,
  id: string,
  payloadType: PayloadType,
  payload: Uint8Array,
): Uint8Array {
  if (payload.length > MAX_PAYLOAD_LEN) {
    throw new FrameError(
      { kind: "payload-too-large", length: payload.length },
      `payload of ${payload.length} bytes exceeds the ${MAX_PAYLOAD_LEN}-byte limit of the length field`,
      id,
      type,
    );
  }
  const out = new Uint8Array(FRAME_HEADER_LEN + payload.length);
  const view = new DataView(out.buffer);
  view.setUint8(0, START_BYTE);
  view.setUint8(1, type);
  out.set(uuidToBytes(id), 2);
  view.setUint8(18, payloadType);
  view.setUint16(19, payload.length, false);
  out.set(payload, FRAME_HEADER_LEN);
  return out;
}

// === Decoding ===

/** The bytes of a received WebSocket message, without copying. */
export function toBytes(data: ArrayBuffer | ArrayBufferView): Uint8Array {
  if (data instanceof Uint8Array) return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return new Uint8Array(data);
}

/**
 * Decodes one WebSocket binary message as exactly one frame. Throws a {@link FrameError}
 * naming the fault: empty message, bad start byte, truncated header, unknown message or
 * payload type, or a length field that disagrees with the bytes received.
 */
export function decodeFrame(data: ArrayBuffer | ArrayBufferView): Frame {
  const buf = toBytes(data);
  const fail = (fault: FrameErrorKind, message: string): FrameError =>
    new FrameError(
      fault,
      message,
      buf.length >= 18 ? uuidToString(buf.subarray(2, 18)) : null,
      buf.length >= 2 ? buf[1]! : null,
    );
  if (buf.length === 0) {
    throw fail({ kind: "empty" }, `empty frame: expected a ${FRAME_HEADER_LEN}-byte header`);
  }
  const start = buf[0]!;
  if (start !== START_BYTE) {
    throw fail(
      { kind: "bad-start-byte", byte: start },
      `bad start byte ${hexByte(start)}: every frame starts with 0xAA`,
    );
  }
  if (buf.length < FRAME_HEADER_LEN) {
    throw fail(
      { kind: "truncated", received: buf.length },
      `truncated frame: ${buf.length} bytes received, the header alone is ${FRAME_HEADER_LEN}`,
    );
  }
  const type = buf[1]!;
  if (!isMessageType(type)) {
    throw fail({ kind: "unknown-message-type", byte: type }, `unknown message type ${hexByte(type)}`);
  }
  const payloadType = buf[18]!;
  if (!isPayloadType(payloadType)) {
    throw fail(
      { kind: "unknown-payload-type", byte: payloadType },
      `unknown payload type ${hexByte(payloadType)}: expected 0x01 BINARY, 0x02 JSON, 0x03 TEXT, 0x04 PROTOBUF or 0x05 CBOR`,
    );
  }
  const declared = (buf[19]! << 8) | buf[20]!;
  const actual = buf.length - FRAME_HEADER_LEN;
  if (declared !== actual) {
    throw fail(
      { kind: "length-mismatch", declared, actual },
      `payload length field says ${declared}, frame carries ${actual}`,
    );
  }
  return {
    type,
    id: uuidToString(buf.subarray(2, 18)),
    payloadType,
    payload: buf.subarray(FRAME_HEADER_LEN),
  };
}

// === Hex, for tests and debugging ===

/** Bytes → upper-case hex without separators. */
export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).toUpperCase().padStart(2, "0");
  return s;
}

/** Hex (spaces allowed) → bytes. */
export function fromHex(hex: string): Uint8Array {
  const clean = hex.replace(/\s+/g, "");
  if (clean.length % 2 !== 0 || /[^0-9a-f]/i.test(clean)) {
    throw new TypeError("not an even-length hex string");
  }
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(i * 2, i * 2 + 2), 16);
  return out;
}
