/**
 * Payload encoding: the same schemas carried as UTF-8 JSON text or as CBOR.
 *
 * CBOR goes through cbor-x, configured so that the server sees plain CBOR: maps with text
 * keys (no record extension), byte strings without typed-array tags, and integers as CBOR
 * integers. 64-bit integers (millisecond timestamps) decode as numbers, not BigInts.
 */

import { Decoder, Encoder } from "cbor-x";

import { PayloadError } from "./errors.js";
import { PayloadType, payloadTypeName } from "./types.js";

/** The two payload encodings structured messages accept. */
export type StructuredPayloadType = typeof PayloadType.Json | typeof PayloadType.Cbor;

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

// `useRecords: false` is essential: a `new Encoder()` otherwise emits cbor-x's record
// extension, which is not plain CBOR and which the server cannot read.
const cborEncoder = new Encoder({
  useRecords: false,
  mapsAsObjects: true,
  tagUint8Array: false,
  variableMapSize: true,
});
// 64-bit integers decode as BigInts; `fromCbor` turns them into numbers. (cbor-x's own
// `int64AsNumber` option gets negative 64-bit integers wrong.)
const cborDecoder = new Decoder({ useRecords: false, mapsAsObjects: true });

const INT32_MIN = -0x80000000;
const UINT32_MAX = 0xffffffff;

/**
 * Prepares a value for the CBOR encoder, walking plain objects and arrays:
 *
 * - `undefined` members are dropped (array items become `null`), as `JSON.stringify` does.
 *   CBOR has an `undefined` value that the server's schemas do not accept.
 * - Integers beyond 32 bits become BigInts. cbor-x writes such numbers as 64-bit floats,
 *   which the server refuses where it expects an integer (every timestamp is one); a
 *   BigInt is written as a CBOR integer.
 */
function forCbor(value: unknown): unknown {
  if (typeof value === "number") {
    if (Number.isSafeInteger(value) && (value > UINT32_MAX || value < INT32_MIN)) return BigInt(value);
    return value;
  }
  if (Array.isArray(value)) return value.map((v) => (v === undefined ? null : forCbor(v)));
  if (value !== null && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (v !== undefined) out[k] = forCbor(v);
    }
    return out;
  }
  return value;
}

/**
 * Turns BigInts in a decoded CBOR value into numbers, so that CBOR and JSON payloads
 * decode to the same values (beyond 2^53 both lose precision alike).
 */
function fromCbor(value: unknown): unknown {
  if (typeof value === "bigint") return Number(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = fromCbor(value[i]);
    return value;
  }
  if (value !== null && typeof value === "object" && !ArrayBuffer.isView(value)) {
    const obj = value as Record<string, unknown>;
    for (const k of Object.keys(obj)) obj[k] = fromCbor(obj[k]);
  }
  return value;
}

/** Encodes a structured payload as JSON or CBOR. */
export function encodePayload(payloadType: StructuredPayloadType, value: unknown): Uint8Array {
  if (payloadType === PayloadType.Json) {
    const text = JSON.stringify(value);
    if (text === undefined) throw new PayloadError("cannot encode an undefined payload as JSON");
    return textEncoder.encode(text);
  }
  if (payloadType === PayloadType.Cbor) {
    try {
      const out = cborEncoder.encode(forCbor(value));
      // cbor-x may return a Node Buffer or a view into a shared buffer; hand out exact bytes.
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength).slice();
    } catch (e) {
      throw new PayloadError(`could not encode CBOR payload: ${String(e)}`, { cause: e });
    }
  }
  throw new PayloadError(unsupported(payloadType));
}

/**
 * Decodes a JSON or CBOR payload into plain values (objects, arrays, strings, numbers).
 * The shape is not checked: the server's messages follow the schemas in `types.ts`.
 */
export function decodePayload<T = unknown>(payloadType: number, bytes: Uint8Array): T {
  if (payloadType === PayloadType.Json) {
    let text: string;
    try {
      text = textDecoder.decode(bytes);
    } catch (e) {
      throw new PayloadError("invalid JSON payload: not UTF-8", { cause: e });
    }
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new PayloadError(`invalid JSON payload: ${(e as Error).message}`, { cause: e });
    }
  }
  if (payloadType === PayloadType.Cbor) {
    try {
      return fromCbor(cborDecoder.decode(bytes)) as T;
    } catch (e) {
      throw new PayloadError(`invalid CBOR payload: ${(e as Error).message}`, { cause: e });
    }
  }
  throw new PayloadError(unsupported(payloadType));
}

function unsupported(payloadType: number): string {
  return `payload type ${payloadTypeName(payloadType)} cannot carry a structured message: use JSON (0x02) or CBOR (0x05)`;
}
