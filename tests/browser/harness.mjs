// What every browser test shares: paths, a free port, the page's static server
// (scripts/serve.py over dist/), Debian's headless Chromium with WebGPU, and the CLI.

import { spawn, execFileSync } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import os from "node:os";
import path from "node:path";
import { before, after } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, "../..");
export const shots = path.join(here, "screenshots");
export const saelab = path.join(root, "target/release/saelab");
mkdirSync(shots, { recursive: true });

export async function freePort() {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Serves the built page; resolves to `{ url, close }` once it listens. */
export async function servePage() {
  const port = await freePort();
  const server = spawn("python3", [path.join(root, "scripts/serve.py"), String(port)], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, SAELAB_QUIET: "1" } });
  await new Promise((resolve, reject) => {
    server.stdout.on("data", (d) => String(d).includes("served at") && resolve());
    server.on("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  return { url: `http://127.0.0.1:${port}/`, close: () => server.kill() };
}

/** Headless Chromium with WebGPU (SwiftShader where there is no GPU). */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--enable-unsafe-webgpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
}

/** Runs the release CLI and parses the JSON it prints. */
export function cli(args) {
  return JSON.parse(String(execFileSync(saelab, args, { stdio: ["ignore", "pipe", "ignore"] })));
}

/**
 * For a test file: the page's server and Chromium, started before its tests, and a scratch folder
 * `work`; all stopped and removed after them. Read `session.server` and `session.browser` inside
 * the tests.
 */
export function pageSession(name) {
  const session = { server: undefined, browser: undefined, work: path.join(os.tmpdir(), `saelab-${name}-${process.pid}`) };
  before(async () => {
    session.server = await servePage();
    session.browser = await launchBrowser();
    mkdirSync(session.work, { recursive: true });
  });
  after(async () => {
    await session.browser?.close();
    session.server?.close();
    rmSync(session.work, { recursive: true, force: true });
  });
  return session;
}
