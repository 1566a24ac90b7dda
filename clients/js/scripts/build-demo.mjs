// Builds the /demo page's script: one self-contained ES module (demo.js: the page, the
// client library and cbor-x). By default it writes it to crates/server/assets/demo/, which
// the server embeds (with index.html and demo.css straight from clients/js/demo/), so
// building the server never needs Node. `node scripts/build-demo.mjs DIR` writes to DIR.

import { mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");

/** Where the server embeds the page from. */
export const ASSETS_DIR = join(pkg, "..", "..", "crates", "server", "assets", "demo");

/** The files the build writes, in the order the server lists them. */
export const ASSET_FILES = ["demo.js"];

/** Builds the page into `outDir`. */
export async function buildDemo(outDir = ASSETS_DIR) {
  await mkdir(outDir, { recursive: true });
  await build({
    entryPoints: [join(pkg, "demo", "demo.ts")],
    outfile: join(outDir, "demo.js"),
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["chrome100", "firefox100", "safari15"],
    minify: true,
    legalComments: "eof",
    banner: { js: "// Built from clients/js/demo by `npm run build`: edit the sources, not this file." },
    logLevel: "warning",
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await buildDemo(process.argv[2] ? resolve(process.argv[2]) : ASSETS_DIR);
}
