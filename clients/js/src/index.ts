/**
 * `@signal-manager/client`: a TypeScript client for signal-manager's binary WebSocket
 * protocol, for browsers and Node.js.
 *
 * - {@link SignalClient}: connect, register, rooms, signals, typed events.
 * - `encodeFrame` / `decodeFrame`, `encodePayload` / `decodePayload`: the wire codec.
 * - `messageToBinary` / `parseBinaryMessage`: the same, in the seed documents' shape.
 */

export * from "./client.js";
export * from "./errors.js";
export * from "./frame.js";
export * from "./message.js";
export * from "./payload.js";
export * from "./types.js";
export type { Unsubscribe } from "./emitter.js";
