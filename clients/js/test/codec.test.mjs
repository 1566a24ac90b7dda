// The frame and payload codecs: the protocol page's vectors, every fault the server names,
// and CBOR as the server writes and reads it.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  FRAME_HEADER_LEN,
  FrameError,
  MessageType,
  PayloadError,
  PayloadType,
  decodeFrame,
  decodePayload,
  encodeFrame,
  encodePayload,
  fromHex,
  messageToBinary,
  messageTypeName,
  parseBinaryMessage,
  randomUuid,
  toHex,
  uuidToBytes,
  uuidToString,
} from "../dist/index.js";

const HEARTBEAT_JSON = '{"timestamp":1704067200000}';
const HEARTBEAT_UUID = "550e8400-e29b-41d4-a716-446655440002";
// docs/protocol.md, "Worked example: HEARTBEAT": seed 000's frame with the length corrected.
const HEARTBEAT_HEX =
  "AA04550E8400E29B41D4A71644665544000202001B7B2274696D657374616D70223A313730343036373230303030307D";
// The same frame as seed 000 prints it: length 0x0018 for a 27-byte payload.
const HEARTBEAT_SEED_HEX =
  "AA04550E8400E29B41D4A716446655440002020018" + "7B2274696D657374616D70223A313730343036373230303030307D";
// Seed 000's REGISTER example, as printed (0x00C8) and corrected (0x00C0).
const REGISTER_PAYLOAD_HEX =
  "7B2276657273696F6E223A22312E302E30222C22636C69656E745F6964223A22756E697175655F636C69656E745F6964656E746966696572222C22617574685F746F6B656E223A2261757468656E7469636174696F6E5F746F6B656E222C226361706162696C6974696573223A5B22776562736F636B6574222C22686561727462656174222C22776562727463225D2C226D65746164617461223A7B22706C6174666F726D223A22776562222C2276657273696F6E223A22312E302E30227D7D";
const REGISTER_SEED_HEX = "AA20550E8400E29B41D4A71644665544000002" + "00C8" + REGISTER_PAYLOAD_HEX;
const REGISTER_FIXED_HEX = "AA20550E8400E29B41D4A71644665544000002" + "00C0" + REGISTER_PAYLOAD_HEX;

// Frames the server sent to a CBOR client (captured from signal-manager-service).
const SERVER_CBOR_HEARTBEAT_ACK =
  "AA05550E8400E29B41D4A716446655440002050029A26974696D657374616D701B0000018CC251F4006B7365727665725F74696D651B000001A201876E06";
const SERVER_CBOR_ERROR =
  "AAFF550E8400E29B41D4A716446655440003050073A36A6572726F725F636F64651901946D6572726F725F6D65737361676575526F6F6D20276E6F706527206E6F7420666F756E646764657461696C73A36C726571756573745F7479706569524F4F4D5F4A4F494E67726F6F6D5F6964646E6F70656974696D657374616D701B000001A201876E07";
const SERVER_CBOR_CONNECT_ACK =
  "AA02550E8400E29B41D4A7164466554400010500ADA66673746174757318C8676D65737361676576436F6E6E656374696F6E2065737461626C69736865646A73657373696F6E5F6964782432336265333062612D653334322D343632372D393461352D3139383664333732653032616E7365727665725F76657273696F6E65312E302E30726865617274626561745F696E74657276616C181E6C6361706162696C69746965738369776562736F636B65746968656172746265617466776562727463";

/** Asserts that `fn` throws a FrameError with this fault kind and exact message. */
function assertFrameError(fn, kind, message) {
  assert.throws(fn, (e) => {
    assert.ok(e instanceof FrameError, `expected a FrameError, got ${e}`);
    assert.equal(e.fault.kind, kind);
    assert.equal(e.message, message);
    return true;
  });
}

describe("the protocol page's vectors", () => {
  test("the corrected HEARTBEAT frame decodes", () => {
    const f = decodeFrame(fromHex(HEARTBEAT_HEX));
    assert.equal(f.type, MessageType.Heartbeat);
    assert.equal(f.id, HEARTBEAT_UUID);
    assert.equal(f.payloadType, PayloadType.Json);
    assert.equal(f.payload.length, 27);
    assert.deepEqual(decodePayload(f.payloadType, f.payload), { timestamp: 1704067200000 });
  });

  test("encoding the HEARTBEAT reproduces the vector byte for byte", () => {
    const bytes = encodeFrame(
      MessageType.Heartbeat,
      HEARTBEAT_UUID,
      PayloadType.Json,
      encodePayload(PayloadType.Json, { timestamp: 1704067200000 }),
    );
    assert.equal(toHex(bytes), HEARTBEAT_HEX);
    assert.equal(
      toHex(messageToBinary({ message_type: 0x04, uuid: HEARTBEAT_UUID, payload_type: 0x02, payload: { timestamp: 1704067200000 } })),
      HEARTBEAT_HEX,
    );
  });

  test("the literal seed HEARTBEAT (length 0x0018) is refused with the server's message", () => {
    assertFrameError(
      () => decodeFrame(fromHex(HEARTBEAT_SEED_HEX)),
      "length-mismatch",
      "payload length field says 24, frame carries 27",
    );
    try {
      decodeFrame(fromHex(HEARTBEAT_SEED_HEX));
    } catch (e) {
      assert.equal(e.id, HEARTBEAT_UUID, "the error keeps the frame's UUID");
      assert.equal(e.messageType, MessageType.Heartbeat);
    }
  });

  test("seed REGISTER: 0x00C8 is refused, 0x00C0 decodes", () => {
    assertFrameError(
      () => decodeFrame(fromHex(REGISTER_SEED_HEX)),
      "length-mismatch",
      "payload length field says 200, frame carries 192",
    );
    const msg = parseBinaryMessage(fromHex(REGISTER_FIXED_HEX));
    assert.equal(msg.message_type, MessageType.Register);
    assert.equal(msg.uuid, "550e8400-e29b-41d4-a716-446655440000");
    assert.equal(msg.payload_type, PayloadType.Json);
    assert.equal(msg.payload.client_id, "unique_client_identifier");
    assert.deepEqual(msg.payload.capabilities, ["websocket", "heartbeat", "webrtc"]);
  });
});

describe("frame faults", () => {
  const header = (type = 0x04, payloadType = 0x02, len = 0) => {
    const b = new Uint8Array(FRAME_HEADER_LEN);
    b[0] = 0xaa;
    b[1] = type;
    b.set(uuidToBytes(HEARTBEAT_UUID), 2);
    b[18] = payloadType;
    b[19] = len >> 8;
    b[20] = len & 0xff;
    return b;
  };

  test("empty message", () => {
    assertFrameError(() => decodeFrame(new Uint8Array(0)), "empty", "empty frame: expected a 21-byte header");
  });

  test("bad start byte", () => {
    const b = header();
    b[0] = 0xab;
    assertFrameError(() => decodeFrame(b), "bad-start-byte", "bad start byte 0xAB: every frame starts with 0xAA");
  });

  test("truncated header, without a UUID to report", () => {
    const b = header().subarray(0, 5);
    assertFrameError(() => decodeFrame(b), "truncated", "truncated frame: 5 bytes received, the header alone is 21");
    try {
      decodeFrame(b);
    } catch (e) {
      assert.equal(e.id, null);
      assert.equal(e.messageType, 0x04);
    }
  });

  test("unknown message type", () => {
    assertFrameError(() => decodeFrame(header(0x42)), "unknown-message-type", "unknown message type 0x42");
  });

  test("unknown payload type", () => {
    assertFrameError(
      () => decodeFrame(header(0x04, 0x09)),
      "unknown-payload-type",
      "unknown payload type 0x09: expected 0x01 BINARY, 0x02 JSON, 0x03 TEXT, 0x04 PROTOBUF or 0x05 CBOR",
    );
  });

  test("length field larger and smaller than the payload", () => {
    const withPayload = (len, n) => {
      const b = new Uint8Array(FRAME_HEADER_LEN + n);
      b.set(header(0x04, 0x02, len));
      return b;
    };
    assertFrameError(() => decodeFrame(withPayload(10, 3)), "length-mismatch", "payload length field says 10, frame carries 3");
    assertFrameError(() => decodeFrame(withPayload(0, 1)), "length-mismatch", "payload length field says 0, frame carries 1");
  });

  test("a payload over 65535 bytes cannot be encoded", () => {
    assert.throws(
      () => encodeFrame(MessageType.SignalOffer, randomUuid(), PayloadType.Json, new Uint8Array(65536)),
      (e) => e instanceof FrameError && e.fault.kind === "payload-too-large",
    );
    // The largest payload fits exactly.
    const max = encodeFrame(MessageType.SignalOffer, randomUuid(), PayloadType.Json, new Uint8Array(65535));
    assert.equal(decodeFrame(max).payload.length, 65535);
  });

  test("decoding reads views into a larger buffer correctly", () => {
    const frame = fromHex(HEARTBEAT_HEX);
    const big = new Uint8Array(frame.length + 10);
    big.set(frame, 7);
    const view = big.subarray(7, 7 + frame.length);
    assert.equal(decodeFrame(view).id, HEARTBEAT_UUID);
    assert.equal(decodeFrame(view.slice().buffer).id, HEARTBEAT_UUID);
  });
});

describe("round trips", () => {
  const every = Object.values(MessageType);

  for (const payloadType of [PayloadType.Json, PayloadType.Cbor]) {
    test(`every message type with a ${payloadType === PayloadType.Json ? "JSON" : "CBOR"} payload`, () => {
      for (const type of every) {
        const id = randomUuid();
        const payload = {
          type: messageTypeName(type),
          n: 42,
          neg: -7,
          ts: 1704067200000,
          f: 0.25,
          ok: true,
          none: null,
          list: ["a", 1, { nested: "é ✓" }],
        };
        const bytes = encodeFrame(type, id, payloadType, encodePayload(payloadType, payload));
        const f = decodeFrame(bytes);
        assert.equal(f.type, type);
        assert.equal(f.id, id);
        assert.equal(f.payloadType, payloadType);
        assert.deepEqual(decodePayload(f.payloadType, f.payload), payload);
      }
    });
  }

  test("TEXT and BINARY payloads through the seed-shaped helpers", () => {
    const text = parseBinaryMessage(messageToBinary({ message_type: 0x10, payload_type: 0x03, payload: "héllo" }));
    assert.equal(text.payload, "héllo");
    const raw = parseBinaryMessage(
      messageToBinary({ message_type: 0x10, payload_type: 0x01, payload: new Uint8Array([1, 2, 3]) }),
    );
    assert.deepEqual([...raw.payload], [1, 2, 3]);
    assert.match(raw.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe("UUIDs", () => {
  test("string and bytes convert both ways", () => {
    const bytes = uuidToBytes(HEARTBEAT_UUID);
    assert.equal(toHex(bytes), "550E8400E29B41D4A716446655440002");
    assert.equal(uuidToString(bytes), HEARTBEAT_UUID);
    assert.equal(uuidToString(uuidToBytes("550E8400E29B41D4A716446655440002")), HEARTBEAT_UUID);
  });

  test("malformed UUIDs are refused", () => {
    assert.throws(() => uuidToBytes("550e8400"), TypeError);
    assert.throws(() => uuidToBytes("zz0e8400-e29b-41d4-a716-446655440002"), TypeError);
    assert.throws(() => uuidToString(new Uint8Array(15)), TypeError);
  });

  test("random UUIDs are version 4 and distinct", () => {
    const seen = new Set();
    for (let i = 0; i < 1000; i++) {
      const u = randomUuid();
      assert.match(u, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      seen.add(u);
    }
    assert.equal(seen.size, 1000);
  });
});

describe("CBOR", () => {
  test("frames the server sent decode to plain objects with number timestamps", () => {
    const ack = decodeFrame(fromHex(SERVER_CBOR_HEARTBEAT_ACK));
    const p = decodePayload(ack.payloadType, ack.payload);
    assert.equal(Object.getPrototypeOf(p), Object.prototype, "a plain object, not a Map");
    assert.equal(p.timestamp, 1704067200000);
    assert.equal(typeof p.server_time, "number");

    const err = decodeFrame(fromHex(SERVER_CBOR_ERROR));
    assert.equal(err.type, MessageType.Error);
    const e = decodePayload(err.payloadType, err.payload);
    assert.equal(e.error_code, 404);
    assert.equal(e.error_message, "Room 'nope' not found");
    assert.equal(Object.getPrototypeOf(e.details), Object.prototype);
    assert.equal(e.details.request_type, "ROOM_JOIN");

    const connect = decodeFrame(fromHex(SERVER_CBOR_CONNECT_ACK));
    const c = decodePayload(connect.payloadType, connect.payload);
    assert.equal(c.status, 200);
    assert.equal(c.heartbeat_interval, 30);
    assert.deepEqual(c.capabilities, ["websocket", "heartbeat", "webrtc"]);
  });

  test("the encoder writes plain CBOR: text-keyed maps, integers as integers, no tags", () => {
    const bytes = encodePayload(PayloadType.Cbor, { timestamp: 1704067200000 });
    // map(1), text(9) "timestamp", uint64 1704067200000: exactly what the server writes.
    assert.equal(toHex(bytes), "A16974696D657374616D701B0000018CC251F400");
    const nested = encodePayload(PayloadType.Cbor, { a: [{ b: 1 }, { b: 2 }], c: { d: "x" } });
    // map(2) "a": [map(1) "b": 1, map(1) "b": 2], "c": map(1) "d": "x"; no record tags.
    assert.equal(toHex(nested), "A261618 2A1616201A16162026163A161646178".replace(/ /g, ""));
    assert.deepEqual(decodePayload(PayloadType.Cbor, nested), { a: [{ b: 1 }, { b: 2 }], c: { d: "x" } });
  });

  test("large and negative integers survive", () => {
    const v = { big: 2 ** 40, neg: -5_000_000_000, max: Number.MAX_SAFE_INTEGER, small: -1, f: 1.5 };
    assert.deepEqual(decodePayload(PayloadType.Cbor, encodePayload(PayloadType.Cbor, v)), v);
  });

  test("undefined members are left out, as in JSON", () => {
    const bytes = encodePayload(PayloadType.Cbor, { a: 1, b: undefined, c: [undefined, 2] });
    assert.deepEqual(decodePayload(PayloadType.Cbor, bytes), { a: 1, c: [null, 2] });
  });
});

describe("payload faults", () => {
  test("malformed JSON and CBOR are PayloadErrors", () => {
    assert.throws(() => decodePayload(PayloadType.Json, new TextEncoder().encode("{nope")), PayloadError);
    assert.throws(() => decodePayload(PayloadType.Json, new Uint8Array([0xff, 0xfe])), /not UTF-8/);
    assert.throws(() => decodePayload(PayloadType.Cbor, new Uint8Array([0xa1])), PayloadError);
  });

  test("TEXT cannot carry a structured message", () => {
    assert.throws(() => decodePayload(PayloadType.Text, new Uint8Array([0x7b, 0x7d])), /payload type TEXT cannot carry/);
    assert.throws(() => encodePayload(PayloadType.Text, {}), PayloadError);
  });

  test("JSON text is raw UTF-8, not base64", () => {
    assert.equal(new TextDecoder().decode(encodePayload(PayloadType.Json, JSON.parse(HEARTBEAT_JSON))), HEARTBEAT_JSON);
  });
});
