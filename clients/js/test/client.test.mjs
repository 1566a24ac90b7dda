// SignalClient against a scripted fake WebSocket: request/response matching by UUID,
// timeouts, ERROR frames, events, heartbeat and close handling.

import assert from "node:assert/strict";
import { describe, mock, test } from "node:test";

import {
  ConnectionClosedError,
  MessageType,
  PayloadType,
  ProtocolError,
  RequestTimeoutError,
  SignalClient,
  SignalClientError,
  SignalError,
  decodeFrame,
  decodePayload,
  encodeFrame,
  encodePayload,
  randomUuid,
} from "../dist/index.js";

const CONNECT_ACK = {
  status: 200,
  message: "Connection established",
  session_id: "11111111-2222-4333-8444-555555555555",
  server_version: "1.0.0",
  heartbeat_interval: 30,
  capabilities: ["websocket", "heartbeat", "webrtc"],
};

/**
 * A WebSocket whose server side is a function: `respond(frame, payload)` is called for
 * every frame the client sends and may call `socket.reply(...)` / `socket.push(...)`.
 * Opens on the next tick unless `open: false`.
 */
function fakeSocketClass({ respond = () => {}, open = true, payloadType = PayloadType.Json } = {}) {
  const sockets = [];
  class FakeSocket {
    binaryType = "blob";
    readyState = 0;
    sent = [];
    #listeners = { open: [], message: [], close: [], error: [] };

    constructor(url) {
      this.url = url;
      sockets.push(this);
      if (open) setTimeout(() => this.serverOpen(), 0);
    }

    addEventListener(type, fn) {
      this.#listeners[type].push(fn);
    }

    #fire(type, ev) {
      for (const fn of this.#listeners[type]) fn(ev);
    }

    send(bytes) {
      assert.equal(this.readyState, 1, "send on an open socket only");
      const frame = decodeFrame(bytes);
      const payload = decodePayload(frame.payloadType, frame.payload);
      this.sent.push({ frame, payload });
      respond.call(this, frame, payload);
    }

    close(code = 1000, reason = "") {
      if (this.readyState >= 2) return;
      this.readyState = 2;
      setTimeout(() => this.serverClose(code, reason), 0);
    }

    // --- the server's side ---

    serverOpen() {
      this.readyState = 1;
      this.#fire("open", {});
    }

    /** Sends a frame to the client, as an ArrayBuffer (binaryType "arraybuffer"). */
    push(type, payload, id = randomUuid(), pt = payloadType) {
      assert.equal(this.binaryType, "arraybuffer", "the client asks for ArrayBuffers");
      const bytes = encodeFrame(type, id, pt, encodePayload(pt, payload));
      this.#fire("message", { data: bytes.buffer });
    }

    /** Delivers any message data as is. */
    raw(data) {
      this.#fire("message", { data });
    }

    /** Answers a request frame. */
    reply(request, type, payload) {
      this.push(type, payload, request.id);
    }

    serverClose(code = 1000, reason = "") {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.#fire("close", { code, reason });
    }
  }
  return { FakeSocket, sockets };
}

/** Throws for a malformed URL, as WebSocket constructors do. */
class URLCheckingSocket {
  constructor(url) {
    new URL(url);
  }
}

/** A server that accepts CONNECT and hands every other frame to `rest`. */
function acceptingServer(rest = () => {}) {
  return function (frame, payload) {
    if (frame.type === MessageType.Connect) {
      this.reply(frame, MessageType.ConnectAck, CONNECT_ACK);
      return;
    }
    rest.call(this, frame, payload);
  };
}

async function connected(respond, options = {}) {
  const { FakeSocket, sockets } = fakeSocketClass({ respond: acceptingServer(respond), ...options });
  const client = await SignalClient.connect("ws://signal.test/", {
    clientId: "alice",
    token: "alice-token",
    WebSocket: FakeSocket,
    heartbeat: false,
    timeoutMs: 200,
    ...options.connect,
  });
  return { client, socket: sockets[0] };
}

describe("connect", () => {
  test("sends CONNECT first and resolves with the session", async () => {
    const { client, socket } = await connected();
    assert.equal(socket.url, "ws://signal.test/");
    assert.equal(socket.sent.length, 1);
    const { frame, payload } = socket.sent[0];
    assert.equal(frame.type, MessageType.Connect);
    assert.equal(frame.payloadType, PayloadType.Json);
    assert.equal(payload.client_id, "alice");
    assert.equal(payload.auth_token, "alice-token");
    assert.equal(payload.version, "1.0.0");
    assert.deepEqual(client.session, CONNECT_ACK);
    assert.ok(client.isOpen);
    client.close();
  });

  test("a 401 ERROR rejects with a SignalError carrying code, message and details", async () => {
    const { FakeSocket } = fakeSocketClass({
      respond(frame) {
        this.reply(frame, MessageType.Error, {
          error_code: 401,
          error_message: "Invalid client_id or auth_token",
          details: { request_type: "CONNECT", timestamp: 1 },
        });
        this.serverClose(1008, "authentication failed");
      },
    });
    await assert.rejects(
      SignalClient.connect("ws://x/", { clientId: "a", token: "bad", WebSocket: FakeSocket }),
      (e) => {
        assert.ok(e instanceof SignalError);
        assert.equal(e.code, 401);
        assert.equal(e.serverMessage, "Invalid client_id or auth_token");
        assert.equal(e.requestType, "CONNECT");
        assert.equal(e.details.timestamp, 1);
        return true;
      },
    );
  });

  test("a socket that closes before opening rejects with ConnectionClosedError", async () => {
    const { FakeSocket, sockets } = fakeSocketClass({ open: false });
    const p = SignalClient.connect("ws://x/", { clientId: "a", token: "t", WebSocket: FakeSocket });
    setTimeout(() => sockets[0].serverClose(1006, ""), 5);
    await assert.rejects(p, (e) => e instanceof ConnectionClosedError && e.code === 1006);
  });

  test("a socket that never opens times out", async () => {
    const { FakeSocket } = fakeSocketClass({ open: false });
    await assert.rejects(
      SignalClient.connect("ws://x/", { clientId: "a", token: "t", WebSocket: FakeSocket, timeoutMs: 30 }),
      RequestTimeoutError,
    );
  });

  test("without any WebSocket implementation, the error says what to do", async () => {
    const saved = globalThis.WebSocket;
    delete globalThis.WebSocket;
    try {
      await assert.rejects(SignalClient.connect("ws://x/", { clientId: "a", token: "t" }), /options\.WebSocket/);
    } finally {
      if (saved) globalThis.WebSocket = saved;
    }
  });

  test("a malformed URL is a SignalClientError", async () => {
    await assert.rejects(
      SignalClient.connect("not a url", { clientId: "a", token: "t", WebSocket: globalThis.WebSocket ?? URLCheckingSocket }),
      (e) => e instanceof SignalClientError && /cannot open a WebSocket to not a url/.test(e.message),
    );
  });

  test("CBOR connections send CBOR", async () => {
    const { client, socket } = await connected(
      function (frame, payload) {
        this.reply(frame, MessageType.HeartbeatAck, { timestamp: payload.timestamp, server_time: 1795000000000 });
      },
      { payloadType: PayloadType.Cbor, connect: { payload: "cbor" } },
    );
    assert.equal(socket.sent[0].frame.payloadType, PayloadType.Cbor);
    const ack = await client.heartbeat();
    assert.equal(ack.server_time, 1795000000000);
    assert.equal(socket.sent[1].frame.payloadType, PayloadType.Cbor);
    client.close();
  });
});

describe("requests", () => {
  test("answers are matched by UUID, whatever their order", async () => {
    const held = [];
    const { client, socket } = await connected(function (frame) {
      held.push(frame);
      if (held.length === 2) {
        // Answer the second request first.
        this.reply(held[1], MessageType.RoomJoinAck, { room_id: "second" });
        this.reply(held[0], MessageType.RoomJoinAck, { room_id: "first" });
      }
    });
    const [a, b] = await Promise.all([client.joinRoom("first"), client.joinRoom("second")]);
    assert.equal(a.room_id, "first");
    assert.equal(b.room_id, "second");
    const join = socket.sent[1].payload;
    assert.deepEqual(
      { version: join.version, client_id: join.client_id, auth_token: join.auth_token, room_id: join.room_id },
      { version: "1.0.0", client_id: "alice", auth_token: "alice-token", room_id: "first" },
    );
    assert.ok(!("role" in join), "unset options are left out, not sent as null");
    client.close();
  });

  test("no answer rejects with RequestTimeoutError; a late answer is dropped", async () => {
    let late;
    const { client, socket } = await connected((frame) => {
      late = frame;
    });
    const events = [];
    client.on("error", (e) => events.push(e));
    const started = Date.now();
    await assert.rejects(client.register({ timeoutMs: 40 }), (e) => {
      assert.ok(e instanceof RequestTimeoutError);
      assert.equal(e.requestType, "REGISTER");
      assert.equal(e.id, late.id);
      return true;
    });
    assert.ok(Date.now() - started >= 35);
    socket.reply(late, MessageType.RegisterAck, { status: 200 });
    assert.deepEqual(events, []);
    client.close();
  });

  test("an ERROR answer rejects with SignalError", async () => {
    const { client } = await connected(function (frame) {
      this.reply(frame, MessageType.Error, {
        error_code: 409,
        error_message: "Client already registered",
        details: { request_type: "REGISTER", client_id: "alice" },
      });
    });
    await assert.rejects(client.register(), (e) => e instanceof SignalError && e.code === 409 && e.details.client_id === "alice");
    client.close();
  });

  test("an ACK of the wrong type is a ProtocolError", async () => {
    const { client } = await connected(function (frame) {
      this.reply(frame, MessageType.RoomLeaveAck, {});
    });
    await assert.rejects(client.joinRoom("r"), (e) => e instanceof ProtocolError && /expected ROOM_JOIN_ACK/.test(e.message));
    client.close();
  });

  test("closing rejects every pending request", async () => {
    const { client, socket } = await connected(() => {});
    const p = client.joinRoom("r", { timeoutMs: 5000 });
    const closed = new Promise((r) => client.once("close", r));
    socket.serverClose(1001, "server shutting down");
    await assert.rejects(p, (e) => e instanceof ConnectionClosedError && e.code === 1001 && e.reason === "server shutting down");
    assert.deepEqual(await closed, { code: 1001, reason: "server shutting down" });
    assert.equal(client.isOpen, false);
    assert.throws(() => client.sendOffer("bob", "v=0"), ConnectionClosedError);
  });

  test("joinOrCreate creates a missing room, and joins when it loses a creation race", async () => {
    const script = [];
    const { client } = await connected(function (frame, payload) {
      script.push(messageTypeOf(frame.type));
      const step = script.length;
      if (frame.type === MessageType.RoomJoin && step === 1) {
        this.reply(frame, MessageType.Error, { error_code: 404, error_message: "Room 'r' not found", details: {} });
      } else if (frame.type === MessageType.RoomCreate) {
        this.reply(frame, MessageType.Error, { error_code: 409, error_message: "Room 'r' already exists", details: {} });
      } else {
        this.reply(frame, MessageType.RoomJoinAck, { room_id: payload.room_id, participants: [] });
      }
    });
    const r = await client.joinOrCreate("r");
    assert.equal(r.created, false);
    assert.equal(r.roomId, "r");
    assert.deepEqual(script, ["join", "create", "join"]);

    script.length = 0;
    const { client: c2 } = await connected(function (frame, payload) {
      if (frame.type === MessageType.RoomJoin) {
        this.reply(frame, MessageType.Error, { error_code: 404, error_message: "not found", details: {} });
      } else {
        this.reply(frame, MessageType.RoomCreateAck, { room_id: payload.room_id });
      }
    });
    const created = await c2.joinOrCreate("r2");
    assert.equal(created.created, true);
    assert.equal(created.roomId, "r2");
    client.close();
    c2.close();
  });

  test("disconnect sends DISCONNECT and resolves when the server closes", async () => {
    const { client, socket } = await connected(function (frame) {
      if (frame.type === MessageType.Disconnect) setTimeout(() => this.serverClose(1000, "client disconnect"), 1);
    });
    assert.deepEqual(await client.disconnect(), { code: 1000, reason: "client disconnect" });
    assert.equal(socket.sent.at(-1).frame.type, MessageType.Disconnect);
  });
});

describe("events", () => {
  test("room events and relayed signals arrive typed", async () => {
    const { client, socket } = await connected();
    const seen = {};
    for (const ev of ["peerJoined", "peerLeft", "roomClosed", "offer", "answer", "iceCandidate"]) {
      client.on(ev, (arg) => (seen[ev] = arg));
    }
    socket.push(MessageType.PeerJoined, { room_id: "r", client_id: "bob", role: "receiver", metadata: {} });
    socket.push(MessageType.PeerLeft, { room_id: "r", client_id: "bob", reason: "left" });
    socket.push(MessageType.RoomClosed, { room_id: "r", reason: "sender 'alice' left (left)" });
    const offerId = randomUuid();
    socket.push(MessageType.SignalOffer, { target_client_id: "alice", room_id: "r", sdp: "v=0 o", from_client_id: "bob", hint: 7 }, offerId);
    socket.push(MessageType.SignalAnswer, { target_client_id: "alice", sdp: "v=0 a", from_client_id: "bob" });
    socket.push(MessageType.SignalIceCandidate, {
      target_client_id: "alice",
      room_id: "r",
      candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
      sdp_mid: "0",
      sdp_m_line_index: 0,
      from_client_id: "bob",
    });
    assert.equal(seen.peerJoined.client_id, "bob");
    assert.equal(seen.peerLeft.reason, "left");
    assert.match(seen.roomClosed.reason, /sender/);
    assert.deepEqual(
      { id: seen.offer.id, from: seen.offer.from, roomId: seen.offer.roomId, sdp: seen.offer.sdp, hint: seen.offer.payload.hint },
      { id: offerId, from: "bob", roomId: "r", sdp: "v=0 o", hint: 7 },
    );
    assert.equal(seen.answer.roomId, null);
    assert.deepEqual(seen.iceCandidate.candidate, {
      candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
      sdpMid: "0",
      sdpMLineIndex: 0,
      usernameFragment: null,
    });
    client.close();
  });

  test("browser-shaped candidates from other clients are understood", async () => {
    const { client, socket } = await connected();
    let got;
    client.on("iceCandidate", (c) => (got = c.candidate));
    socket.push(MessageType.SignalIceCandidate, {
      candidate: { candidate: "candidate:2 1 udp 1 ::1 9 typ host", sdpMid: "v", sdpMLineIndex: 1, usernameFragment: "uf" },
      from_client_id: "bob",
    });
    assert.deepEqual(got, { candidate: "candidate:2 1 udp 1 ::1 9 typ host", sdpMid: "v", sdpMLineIndex: 1, usernameFragment: "uf" });
    client.close();
  });

  test("signals go out with the target, room and candidate fields the server expects", async () => {
    const { client, socket } = await connected();
    const id = client.sendCandidate("bob", { candidate: "candidate:x", sdpMid: "0", sdpMLineIndex: 0, usernameFragment: null }, "r");
    const { frame, payload } = socket.sent.at(-1);
    assert.equal(frame.type, MessageType.SignalIceCandidate);
    assert.equal(frame.id, id);
    assert.deepEqual(payload, { target_client_id: "bob", room_id: "r", candidate: "candidate:x", sdp_mid: "0", sdp_m_line_index: 0 });
    client.sendOffer("bob", "v=0");
    assert.deepEqual(socket.sent.at(-1).payload, { target_client_id: "bob", sdp: "v=0" });
    client.close();
  });

  test("an ERROR for a signal arrives as an error event with the signal's UUID", async () => {
    const { client, socket } = await connected();
    const errors = [];
    client.on("error", (e) => errors.push(e));
    const id = client.sendOffer("nobody", "v=0", "r");
    socket.push(
      MessageType.Error,
      { error_code: 404, error_message: "Target client 'nobody' not found", details: { request_type: "SIGNAL_OFFER", target_client_id: "nobody" } },
      id,
    );
    assert.equal(errors.length, 1);
    assert.ok(errors[0] instanceof SignalError);
    assert.equal(errors[0].id, id);
    assert.equal(errors[0].code, 404);
    assert.equal(errors[0].requestType, "SIGNAL_OFFER");
    client.close();
  });

  test("undecodable frames and text messages are reported, and the connection goes on", async () => {
    const { client, socket } = await connected(function (frame) {
      this.reply(frame, MessageType.HeartbeatAck, { timestamp: 1, server_time: 2 });
    });
    const errors = [];
    client.on("error", (e) => errors.push(e));
    socket.raw(new Uint8Array([0xab, 0x01]).buffer);
    socket.raw("hello");
    assert.equal(errors.length, 2);
    assert.equal(errors[0].name, "FrameError");
    assert.equal(errors[0].message, "bad start byte 0xAB: every frame starts with 0xAA");
    assert.ok(errors[1] instanceof ProtocolError);
    await client.heartbeat();
    assert.ok(client.isOpen);
    client.close();
  });

  test("a listener that throws does not stop the others", async () => {
    const { client, socket } = await connected();
    const calls = [];
    const reported = [];
    const saved = globalThis.reportError;
    globalThis.reportError = (e) => reported.push(e);
    client.on("peerLeft", () => {
      calls.push(1);
      throw new Error("listener bug");
    });
    client.on("peerLeft", () => calls.push(2));
    socket.push(MessageType.PeerLeft, { room_id: "r", client_id: "bob", reason: "left" });
    if (saved) globalThis.reportError = saved;
    else delete globalThis.reportError;
    assert.deepEqual(calls, [1, 2]);
    assert.equal(reported.length, 1);
    assert.equal(reported[0].message, "listener bug");
    client.close();
  });
});

describe("heartbeat", () => {
  test("runs at the server's interval", async () => {
    mock.timers.enable({ apis: ["setInterval"] });
    try {
      const { FakeSocket, sockets } = fakeSocketClass({
        respond(frame, payload) {
          if (frame.type === MessageType.Connect) {
            this.reply(frame, MessageType.ConnectAck, { ...CONNECT_ACK, heartbeat_interval: 5 });
          } else if (frame.type === MessageType.Heartbeat) {
            this.reply(frame, MessageType.HeartbeatAck, { timestamp: payload.timestamp, server_time: 0 });
          }
        },
      });
      const client = await SignalClient.connect("ws://x/", { clientId: "a", token: "t", WebSocket: FakeSocket });
      const beats = () => sockets[0].sent.filter((s) => s.frame.type === MessageType.Heartbeat).length;
      mock.timers.tick(4999);
      assert.equal(beats(), 0);
      mock.timers.tick(1);
      assert.equal(beats(), 1);
      mock.timers.tick(10_000);
      assert.equal(beats(), 3);
      assert.equal(typeof sockets[0].sent.at(-1).payload.timestamp, "number");
      sockets[0].serverClose(1006, "");
      mock.timers.tick(10_000);
      assert.equal(beats(), 3, "no heartbeat after close");
    } finally {
      mock.timers.reset();
    }
  });
});

function messageTypeOf(t) {
  return t === MessageType.RoomJoin ? "join" : t === MessageType.RoomCreate ? "create" : String(t);
}
