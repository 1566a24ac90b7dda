// The /demo page in a two-node cluster, through a restart of one node: page one is served
// by node a and signals through it, page two through node b. Once their call is up, node
// a is stopped (SIGTERM) and started again. Page one's client resumes its session on the
// restarted node: the call goes on without a new offer or answer, nobody is told anyone
// left, chat still crosses, and signaling works again through the resumed session.
//
// Needs SIGNAL_HTTP_URL_A and SIGNAL_HTTP_URL_B (the nodes, started with --dev) and
// SIGNAL_RESTART_A (a command that restarts node a and returns once it is ready);
// scripts/browser-test.sh provides them. CHROMIUM overrides the browser path.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const nodeA = process.env.SIGNAL_HTTP_URL_A;
const nodeB = process.env.SIGNAL_HTTP_URL_B;
const restartA = process.env.SIGNAL_RESTART_A;
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const shots = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "target", "browser");
const STEP = 30_000;

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--allow-loopback-in-peer-connection",
  "--disable-features=WebRtcHideLocalIpsWithMdns",
  "--use-fake-ui-for-media-stream",
  "--use-fake-device-for-media-stream",
];

const missing = [
  ["SIGNAL_HTTP_URL_A", nodeA],
  ["SIGNAL_HTTP_URL_B", nodeB],
  ["SIGNAL_RESTART_A", restartA],
].filter(([, v]) => !v);
if (missing.length) {
  // A prerequisite missing is a failure, never a silent skip.
  throw new Error(`set ${missing.map(([k]) => k).join(", ")} (scripts/browser-test.sh does)`);
}

let browser;
let profile;

before(async () => {
  profile = await mkdtemp(join(tmpdir(), "signal-demo-cluster-"));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: ARGS,
    timeout: STEP,
    viewport: { width: 1000, height: 900 },
  });
});

after(async () => {
  await browser?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

async function openDemo(base, clientId, token, room) {
  const page = await browser.newPage();
  page.setDefaultTimeout(STEP);
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    // The browser reports the refused connections while node a is down: expected.
    if (m.type() === "error" && !/WebSocket connection|ERR_CONNECTION_REFUSED/.test(m.text())) {
      problems.push(`console error: ${m.text()}`);
    }
  });
  const q = new URLSearchParams({ client: clientId, token, room, autojoin: "1" });
  const res = await page.goto(`${base}/demo?${q}`);
  assert.equal(res.status(), 200);
  return { page, problems };
}

const state = (page) => page.evaluate(() => window.demoState);

async function chat(from, to, text) {
  await from.page.fill("#chat-input", text);
  await from.page.press("#chat-input", "Enter");
  await to.page.waitForFunction((t) => window.demoState.messages.some((m) => !m.self && m.text === t), text, {
    timeout: STEP,
  });
}

test("the demo's call survives a restart of its node", { timeout: 180_000 }, async () => {
  const room = `cluster-${Math.random().toString(36).slice(2, 10)}`;
  const one = await openDemo(nodeA, "test_client_1", "test_token_1", room);
  await one.page.waitForFunction(() => window.demoState.joined, null, { timeout: STEP });
  const two = await openDemo(nodeB, "test_client_2", "test_token_2", room);
  for (const { page } of [one, two]) {
    await page.waitForFunction(() => window.demoState.dataChannelOpen, null, { timeout: STEP });
  }
  await chat(one, two, "before the restart");
  const before = [await state(one.page), await state(two.page)];
  assert.equal(before[0].resumes, 0);

  // Node a goes away and comes back; page one's session comes back with it.
  execFileSync(restartA, { stdio: "inherit", timeout: 60_000 });
  await one.page.waitForFunction(() => window.demoState.resumes >= 1 && window.demoState.signaling === "joined", null, {
    timeout: 45_000,
  });

  const after = [await state(one.page), await state(two.page)];
  for (const [i, s] of after.entries()) {
    assert.equal(s.peerId, before[i].peerId, "the same peer: nobody left");
    assert.equal(s.negotiations, before[i].negotiations, "no new offer or answer");
    assert.ok(s.dataChannelOpen, "the call went on");
    assert.equal(s.connectionState, "connected");
    assert.deepEqual(s.errors, []);
  }
  await chat(two, one, "after the restart");
  await chat(one, two, "and back");

  await mkdir(shots, { recursive: true });
  await one.page.screenshot({ path: join(shots, "demo-cluster-1.png"), fullPage: true });

  // Signaling through the resumed session: page two leaves, page one is told.
  await two.page.click("#leave");
  await one.page.waitForFunction(() => window.demoState.peerId === null, null, { timeout: STEP });
  assert.deepEqual(one.problems, []);
  assert.deepEqual(two.problems, []);
});
