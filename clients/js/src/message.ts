/**
 * The seed documents' helpers, `messageToBinary` and `parseBinaryMessage`, done right: the
 * message is `{message_type, uuid, payload_type, payload}` as in their examples, the payload
 * is raw JSON or CBOR (not base64), and the length field is the exact payload length.
 */

import { decodeFrame, encodeFrame, randomUuid } from "./frame.js";
import { decodePayload, encodePayload } from "./payload.js";
import { PayloadType, type MessageType } from "./types.js";

/** A frame in the seed documents' shape. */
export interface BinaryMessage<P = unknown> {
  /** Message type byte, e.g. `0x20` for REGISTER. */
  message_type: MessageType;
  /** Frame UUID; a random one is used when absent. */
  uuid?: string;
  /** Payload type byte (default `0x02` JSON). */
  payload_type?: PayloadType;
  /** For JSON and CBOR, any value; for TEXT, a string; for other types, bytes. */
  payload: P;
}

/** A frame received, in the seed documents' shape (every field present). */
export interface ParsedBinaryMessage<P = unknown> extends BinaryMessage<P> {
  uuid: string;
  payload_type: PayloadType;
}

/** Encodes a message as one binary frame, ready for `WebSocket.send`. */
export function messageToBinary(message: BinaryMessage): Uint8Array {
  const payloadType = message.payload_type ?? PayloadType.Json;
  const id = message.uuid ?? randomUuid();
  let body: Uint8Array;
  if (payloadType === PayloadType.Json || payloadType === PayloadType.Cbor) {
    body = encodePayload(payloadType, message.payload);
  } else if (payloadType === PayloadType.Text && typeof message.payload === "string") {
    body = new TextEncoder().encode(message.payload);
  } else if (message.payload instanceof Uint8Array) {
    body = message.payload;
  } else {
    throw new TypeError("a payload that is not JSON or CBOR must be a Uint8Array (or a string for TEXT)");
  }
  return encodeFrame(message.message_type, id, payloadType, body);
}

/**
 * Decodes one binary WebSocket message. JSON and CBOR payloads are parsed, TEXT becomes
 * a string, anything else stays bytes. Throws a `FrameError` for a malformed frame and a
 * `PayloadError` for a payload that does not parse.
 */
export function parseBinaryMessage(data: ArrayBuffer | ArrayBufferView): ParsedBinaryMessage {
  const frame = decodeFrame(data);
  let payload: unknown;
  if (frame.payloadType === PayloadType.Json || frame.payloadType === PayloadType.Cbor) {
    payload = decodePayload(frame.payloadType, frame.payload);
  } else if (frame.payloadType === PayloadType.Text) {
    payload = new TextDecoder().decode(frame.payload);
  } else {
    payload = frame.payload;
  }
  return { message_type: frame.type, uuid: frame.id, payload_type: frame.payloadType, payload };
}
