// SignalClient against a real server: connect, register, create and join a room, and an
// offer, an answer and a candidate crossing between two clients, in JSON and in CBOR.
//
// Runs when SIGNAL_URL names a server started with --dev (scripts/browser-test.sh starts
// one); skipped otherwise. Node 20 needs --experimental-websocket for its WebSocket.

import assert from "node:assert/strict";
import net from "node:net";
import { describe, test } from "node:test";

import { SignalClient, SignalError } from "../dist/index.js";

const url = process.env.SIGNAL_URL;
const skip = url ? false : "SIGNAL_URL is not set (scripts/browser-test.sh sets it)";
const TIMEOUT = 5_000;

/** Resolves with the next `event` of `client`, or rejects after TIMEOUT. */
function next(client, event) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} event within ${TIMEOUT} ms`)), TIMEOUT);
    client.once(event, (arg) => {
      clearTimeout(timer);
      resolve(arg);
    });
  });
}

async function registered(clientId, token, payload) {
  const client = await SignalClient.connect(url, { clientId, token, payload, timeoutMs: TIMEOUT });
  try {
    await client.register();
  } catch (e) {
    // Registered by an earlier run against the same database.
    if (!(e instanceof SignalError && e.code === 409)) throw e;
  }
  return client;
}

describe("against a real server", { skip, timeout: 30_000 }, () => {
  assert.ok(!url || typeof globalThis.WebSocket === "function", "run node with --experimental-websocket (Node 20)");

  for (const payload of ["json", "cbor"]) {
    test(`two clients meet in a room and exchange signals (${payload})`, async () => {
      const room = `it-${payload}-${Math.random().toString(36).slice(2, 10)}`;
      const alice = await registered("test_client_1", "test_token_1", payload);
      const bob = await registered("test_client_2", "test_token_2", payload);
      try {
        assert.equal(alice.session.server_version, "1.0.0");
        const hb = await alice.heartbeat();
        assert.equal(typeof hb.server_time, "number");

        const created = await alice.joinOrCreate(room, { metadata: { test: "integration" } });
        assert.equal(created.created, true);
        assert.equal(created.ack.room_id, room);
        assert.equal(created.ack.connection_info.role, "sender");

        const joinedEvent = next(alice, "peerJoined");
        const joined = await bob.joinOrCreate(room);
        assert.equal(joined.created, false);
        assert.deepEqual(joined.ack.participants.map((p) => p.client_id), ["test_client_1"]);
        const pj = await joinedEvent;
        assert.equal(pj.client_id, "test_client_2");
        assert.equal(pj.room_id, room);

        const offerEvent = next(bob, "offer");
        const offerId = alice.sendOffer("test_client_2", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n", room);
        const offer = await offerEvent;
        assert.equal(offer.id, offerId, "a relayed signal keeps its UUID");
        assert.equal(offer.from, "test_client_1");
        assert.equal(offer.roomId, room);
        assert.match(offer.sdp, /^v=0/);

        const answerEvent = next(alice, "answer");
        bob.sendAnswer("test_client_1", "v=0 answer", room);
        assert.equal((await answerEvent).from, "test_client_2");

        const candidateEvent = next(alice, "iceCandidate");
        bob.sendCandidate(
          "test_client_1",
          { candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", sdpMid: "0", sdpMLineIndex: 0 },
          room,
        );
        const cand = await candidateEvent;
        assert.deepEqual(cand.candidate, {
          candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
          sdpMid: "0",
          sdpMLineIndex: 0,
          usernameFragment: null,
        });

        const errorEvent = next(alice, "error");
        const badId = alice.sendOffer("nobody-here", "v=0", room);
        const err = await errorEvent;
        assert.ok(err instanceof SignalError);
        assert.equal(err.id, badId);
        assert.equal(err.code, 404);

        await assert.rejects(alice.joinRoom(room), (e) => e instanceof SignalError && e.code === 409);

        const left = next(alice, "peerLeft");
        await bob.leaveRoom(room, { reason: "done" });
        assert.equal((await left).client_id, "test_client_2");
        await alice.leaveRoom(room);
      } finally {
        await Promise.all([alice.disconnect(), bob.disconnect()]);
      }
    });
  }

  test("bad credentials are a 401 SignalError", async () => {
    await assert.rejects(
      SignalClient.connect(url, { clientId: "test_client_1", token: "wrong", timeoutMs: TIMEOUT }),
      (e) => e instanceof SignalError && e.code === 401 && e.requestType === "CONNECT",
    );
  });

  test("a resumable client takes its session back by itself after its connection is cut", async () => {
    // A TCP proxy of the test's own between alice and the server; cut() drops every
    // connection through it without a WebSocket close, as a network change does.
    const target = new URL(url);
    const sockets = new Set();
    const proxy = net.createServer((client) => {
      const upstream = net.connect(Number(target.port), target.hostname);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on("error", () => {});
        s.on("close", () => sockets.delete(s));
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise((r) => proxy.listen(0, "127.0.0.1", r));
    const proxyUrl = `ws://127.0.0.1:${proxy.address().port}/`;
    const cut = () => {
      for (const s of sockets) s.destroy();
    };
    const room = `resume-${Math.random().toString(36).slice(2, 10)}`;
    const bob = await registered("test_client_2", "test_token_2", "json");
    const alice = await SignalClient.connect(proxyUrl, {
      clientId: "test_client_1",
      token: "test_token_1",
      timeoutMs: TIMEOUT,
      resume: { firstDelayMs: 50 },
    });
    try {
      assert.equal(alice.isResumable, true);
      await bob.joinOrCreate(room);
      const joined = next(bob, "peerJoined");
      await alice.joinRoom(room, { role: "receiver" });
      await joined;

      const got = [];
      alice.on("offer", (o) => got.push(o.sdp));
      const reconnecting = next(alice, "reconnecting");
      const resumed = next(alice, "resumed");
      const told = next(bob, "peerReconnecting");
      cut();
      assert.equal((await reconnecting).code, 1006);
      assert.equal((await told).client_id, "test_client_1");
      for (let i = 0; i < 20; i++) bob.sendOffer("test_client_1", `v=0 n=${i}`, room);
      await resumed;
      const deadline = Date.now() + TIMEOUT;
      while (got.length < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(got, Array.from({ length: 20 }, (_, i) => `v=0 n=${i}`));
      // The session goes on: alice signals back on her new connection.
      const back = next(bob, "offer");
      alice.sendOffer("test_client_2", "v=0 back", room);
      assert.equal((await back).sdp, "v=0 back");
    } finally {
      await Promise.all([alice.disconnect(), bob.disconnect()]);
      proxy.close();
    }
  });
});
