// Fails when crates/server/assets/demo/ is not what the demo sources build to: rebuilds
// the page into a temporary directory and compares every file byte for byte. Run
// `npm run build` and commit crates/server/assets/demo/ to fix a failure.

import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

import { ASSETS_DIR, ASSET_FILES, buildDemo } from "./build-demo.mjs";

const fresh = await mkdtemp(join(tmpdir(), "signal-demo-assets-"));
const problems = [];
try {
  await buildDemo(fresh);
  const present = await readdir(ASSETS_DIR).catch(() => []);
  for (const name of ASSET_FILES) {
    const want = await readFile(join(fresh, name));
    const have = await readFile(join(ASSETS_DIR, name)).catch(() => null);
    if (!have) problems.push(`${name}: missing`);
    else if (!want.equals(have)) problems.push(`${name}: differs from a fresh build`);
  }
  for (const name of present) {
    if (!ASSET_FILES.includes(name)) problems.push(`${name}: not produced by the build`);
  }
} finally {
  await rm(fresh, { recursive: true, force: true });
}

const where = relative(process.cwd(), ASSETS_DIR);
if (problems.length) {
  console.error(`check-assets: ${where} is out of date:`);
  for (const p of problems) console.error(`  ${p}`);
  console.error("run `npm run build` in clients/js and commit the result");
  process.exit(1);
}
console.log(`check-assets: ${where} matches the demo sources`);
