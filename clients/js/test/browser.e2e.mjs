// The /demo page in two headless Chromium pages against a real server: both join one room,
// the WebRTC data channel opens, chat crosses both ways, video arrives, and each page is
// saved as a screenshot in target/browser/.
//
// Needs SIGNAL_HTTP_URL (the server's base URL, started with --dev) and Debian's chromium;
// scripts/browser-test.sh provides both. CHROMIUM overrides the browser path.

import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const base = process.env.SIGNAL_HTTP_URL;
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const shots = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "target", "browser");
const STEP = 30_000;

// The flags Chromium needs on a machine without outside network, plus WebRTC on loopback:
// loopback candidates, real host IPs instead of mDNS names, and a fake camera that is
// granted without a prompt.
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

let browser;
let profile;

before(async () => {
  if (!base) return;
  profile = await mkdtemp(join(tmpdir(), "signal-demo-chromium-"));
  // A persistent context gets the fresh --user-data-dir; pages of it share one profile,
  // which is fine: each page is its own client with its own connection.
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

/** Opens the demo page for one client and records what goes wrong on it. */
async function openDemo(clientId, token, room) {
  const page = await browser.newPage();
  page.setDefaultTimeout(STEP);
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`);
  });
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  const q = new URLSearchParams({ client: clientId, token, room, autojoin: "1" });
  const res = await page.goto(`${base}/demo?${q}`);
  assert.equal(res.status(), 200);
  return { page, problems };
}

const state = (page) => page.evaluate(() => window.demoState);

test("two browsers connect through the demo page and chat", { skip: !base && "SIGNAL_HTTP_URL is not set", timeout: 120_000 }, async () => {
  const room = `browser-${Math.random().toString(36).slice(2, 10)}`;

  const one = await openDemo("test_client_1", "test_token_1", room);
  await one.page.waitForFunction(() => window.demoState.joined, null, { timeout: STEP });
  const two = await openDemo("test_client_2", "test_token_2", room);

  for (const { page } of [one, two]) {
    await page.waitForFunction(() => window.demoState.dataChannelOpen, null, { timeout: STEP });
  }
  assert.equal((await state(one.page)).peerId, "test_client_2");
  assert.equal((await state(two.page)).peerId, "test_client_1");

  // Chat, typed into the page as a person would.
  await one.page.fill("#chat-input", "hello from one");
  await one.page.press("#chat-input", "Enter");
  await two.page.waitForFunction(
    () => window.demoState.messages.some((m) => !m.self && m.text === "hello from one"),
    null,
    { timeout: STEP },
  );
  await two.page.fill("#chat-input", "and back from two");
  await two.page.click("#chat-send");
  await one.page.waitForFunction(
    () => window.demoState.messages.some((m) => !m.self && m.text === "and back from two"),
    null,
    { timeout: STEP },
  );
  await two.page.waitForSelector("#chat-log li:has-text('hello from one')");

  // The fake camera's video reaches the other side.
  for (const { page } of [one, two]) {
    await page.waitForFunction(
      () => {
        const v = document.getElementById("remote-video");
        return v instanceof HTMLVideoElement && v.videoWidth > 0 && v.currentTime > 0;
      },
      null,
      { timeout: STEP },
    );
  }

  for (const [i, { page }] of [one, two].entries()) {
    const s = await state(page);
    assert.equal(s.connectionState, "connected");
    assert.ok(s.hasLocalVideo && s.hasRemoteVideo, "video both ways");
    assert.deepEqual(s.errors, []);
  }

  await mkdir(shots, { recursive: true });
  await one.page.screenshot({ path: join(shots, "demo-1.png"), fullPage: true });
  await two.page.screenshot({ path: join(shots, "demo-2.png"), fullPage: true });

  assert.deepEqual(one.problems, []);
  assert.deepEqual(two.problems, []);

  // Leaving closes the chat on the other side.
  await two.page.click("#leave");
  await one.page.waitForFunction(() => !window.demoState.dataChannelOpen && window.demoState.peerId === null, null, {
    timeout: STEP,
  });
});
