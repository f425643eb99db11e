// The page as a person uses it, in Debian's headless Chromium with WebGPU on SwiftShader:
// it opens on the bundled SAE, shows GPU metrics that match the CPU reference (and the CLI),
// keeps the loaded SAE when a broken file is chosen, and loads a second SAE through the file input.
// Screenshots go to tests/browser/screenshots/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync, readFileSync } from "node:fs";
import path from "node:path";
import { launchBrowser, root, saelab, servePage, shots } from "./harness.mjs";

let server;
let browser;
let url;

before(async () => {
  server = await servePage();
  url = server.url;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  server?.close();
});

/** The CLI's eval of the same SAE and activations on the CPU reference. */
function cliEval(saeDir, npy) {
  const out = execFileSync(saelab, ["eval", "--sae", saeDir, "--input", npy, "--device", "cpu"], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  return JSON.parse(String(out));
}

const num = async (page, sel) => Number(await page.locator(sel).innerText());

/** Collects what the browser's WebGPU implementation complains about (shader or binding errors). */
function watchGpu(page) {
  const complaints = [];
  page.on("console", (m) => {
    if (/WGSL|Invalid|Validation|rejected a command/i.test(m.text())) complaints.push(m.text().slice(0, 300));
  });
  return complaints;
}

function close(a, b, what) {
  assert.ok(Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(b)), `${what}: page ${a} vs ${b}`);
}

test("the page runs the bundled SAE on WebGPU and matches the CPU reference and the CLI", async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const gpuComplaints = watchGpu(page);
  await page.goto(url);
  await page.locator("#check").waitFor({ timeout: 120_000 });

  const adapter = await page.locator("#adapter").innerText();
  assert.match(adapter, /^WebGPU/, `expected a WebGPU adapter, page says: ${adapter}`);
  assert.match(await page.locator("#primary-device").innerText(), /^WebGPU/);
  assert.match(await page.locator("#check").innerText(), /match/);
  assert.equal(await page.locator('[data-key="architecture"]').innerText(), "topk");
  assert.equal(await page.locator('[data-key="d_sae"]').innerText(), "128");

  const cli = cliEval(path.join(root, "www/demo/sae"), path.join(root, "www/demo/activations.npy"));
  for (const [id, key] of [["l0", "l0"], ["mse", "mse"], ["fvu", "fvu"], ["cosine", "cosine"], ["dead", "dead_fraction"]]) {
    const gpu = await num(page, `#m-${id}`);
    const cpu = await num(page, `#ref-${id}`);
    close(gpu, cpu, `${id} GPU vs CPU reference`);
    close(gpu, cli[key], `${id} page vs CLI`);
  }
  // 24 density bins and the dead-feature bar.
  assert.equal(await page.locator("#density-plot rect").count(), 25);
  assert.ok((await page.locator("#row-error-plot polyline").getAttribute("points")).split(" ").filter(Boolean).length === 512);
  await page.screenshot({ path: path.join(shots, "1-bundled-demo.png"), fullPage: true });
  assert.deepEqual(errors, []);
  assert.deepEqual(gpuComplaints, []);
  await page.close();
});

test("a broken file is reported in place and the loaded SAE stays usable; a second SAE loads", async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(url);
  await page.locator("#check").waitFor({ timeout: 120_000 });
  const l0Before = await num(page, "#m-l0");

  // A truncated weights file.
  const demoStd = path.join(root, "tests/fixtures/demo_standard");
  const weights = readFileSync(path.join(demoStd, "sae_weights.safetensors"));
  const cfg = readFileSync(path.join(demoStd, "cfg.json"));
  await page.locator("#sae-files").setInputFiles([
    { name: "cfg.json", mimeType: "application/json", buffer: cfg },
    { name: "sae_weights.safetensors", mimeType: "application/octet-stream", buffer: weights.subarray(0, 5000) },
  ]);
  await page.locator("#error").waitFor({ timeout: 30_000 });
  assert.match(await page.locator("#error").innerText(), /^sae_weights\.safetensors: /);
  assert.match(await page.locator("#sae-name").innerText(), /bundled demo/);
  assert.equal(await num(page, "#m-l0"), l0Before);

  // Activations of the wrong width for the loaded SAE.
  await page.locator("#npy-file").setInputFiles(path.join(root, "tests/fixtures/sae/standard_bdec1_none/x.npy"));
  await page.waitForFunction(() => document.querySelector("#error")?.innerText.includes("expected activations of shape [n, 64]"));
  assert.equal(await num(page, "#m-l0"), l0Before);
  await page.screenshot({ path: path.join(shots, "2-error-kept-previous.png"), fullPage: true });

  // The whole second SAE: loads, runs, and replaces the error with fresh results.
  await page.locator("#sae-files").setInputFiles([path.join(demoStd, "cfg.json"), path.join(demoStd, "sae_weights.safetensors")]);
  await page.waitForFunction(() => document.querySelector('[data-key="architecture"]')?.innerText === "standard");
  await page.waitForFunction(() => document.querySelector("#status")?.innerText.startsWith("Done"));
  assert.equal(await page.locator("#error").count(), 0);
  assert.match(await page.locator("#check").innerText(), /match/);
  const cli = cliEval(demoStd, path.join(root, "www/demo/activations.npy"));
  close(await num(page, "#m-l0"), cli.l0, "second SAE L0 page vs CLI");
  close(await num(page, "#m-fvu"), cli.fvu, "second SAE FVU page vs CLI");
  await page.screenshot({ path: path.join(shots, "3-second-sae.png"), fullPage: true });
  await page.close();
});

test("without WebGPU the page says so and runs the CPU reference", async () => {
  const context = await browser.newContext();
  // Hide navigator.gpu before the app starts, as in a browser without WebGPU.
  await context.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }));
  const page = await context.newPage();
  await page.goto(url);
  await page.locator("#check").waitFor({ timeout: 120_000 });
  assert.match(await page.locator("#adapter").innerText(), /WebGPU is not available/);
  assert.equal(await page.locator("#primary-device").innerText(), "cpu (wasm SIMD, 1 thread)");
  const cli = cliEval(path.join(root, "www/demo/sae"), path.join(root, "www/demo/activations.npy"));
  close(await num(page, "#m-l0"), cli.l0, "CPU-only L0 vs CLI");
  await page.screenshot({ path: path.join(shots, "4-no-webgpu.png"), fullPage: true });
  await context.close();
});

/** The CLI's toy run for a lab URL's settings, on the CPU reference. */
function cliToy(args) {
  const out = execFileSync(saelab, ["toy", ...args, "--device", "cpu"], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  return JSON.parse(String(out));
}

async function runLab(page, hash) {
  // A hash-only navigation would keep the running page (and its last result): load afresh.
  await page.goto("about:blank");
  await page.goto(`${url}${hash}`);
  await page.locator("#adapter").filter({ hasText: /WebGPU/ }).waitFor({ timeout: 60_000 });
  await page.locator("#lab-start").click();
  await page.waitForFunction(() => document.querySelector("#lab-status")?.innerText.startsWith("Finished"), null, { timeout: 300_000 });
  return Number(await page.locator("#lab-mmcs").innerText());
}

test("the lab on the CPU follows the CLI's run (same seed, same data)", async () => {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1100 } });
  await context.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }));
  const page = await context.newPage();
  const hash = "#lab?preset=superposition-2d&steps=300";
  await page.goto(`${url}${hash}`);
  assert.equal(await page.locator("#lab-geometry").inputValue(), "polygon");
  assert.equal(await page.locator("#lab-steps").inputValue(), "300");
  const mmcs = await runLab(page, hash);
  assert.match(await page.locator(".lab-results h2").innerText(), /cpu \(wasm SIMD, 1 thread\)/);
  const cli = cliToy(["--preset", "superposition-2d", "--steps", "300"]);
  // Not to the bit: the CLI's products use FMA (AVX2) and the page's wasm SIMD multiplies and
  // adds apart, and 300 Adam steps carry that rounding along (measured: 2e-4 of MMCS).
  assert.ok(Math.abs(mmcs - cli.mmcs) <= 1e-3, `page MMCS ${mmcs} vs CLI ${cli.mmcs}`);
  assert.equal(await page.locator("#lab-recovered").innerText(), `${cli.recovered} / 5`);
  assert.equal(await page.locator("#lab-arrows line").count(), 5 + 8);
  assert.ok((await page.locator("#lab-heatmap rect").count()) >= 5);
  // The URL now carries every setting, so the link reproduces the run.
  assert.match(page.url(), /#lab\?features=5&dims=2&p=0.05&geometry=polygon.*&steps=300/);
  await page.screenshot({ path: path.join(shots, "5-lab-superposition-2d-cpu.png"), fullPage: true });
  await context.close();
});

test("the lab trains on WebGPU and follows the CLI's run", async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const gpuComplaints = watchGpu(page);
  // SwiftShader runs WebGPU on the CPU at a few steps per second: a short run.
  const mmcs = await runLab(page, "#lab?preset=sparse-features&steps=20&device=gpu");
  assert.match(await page.locator(".lab-results h2").innerText(), /SwiftShader|WebGPU/);
  assert.doesNotMatch(await page.locator(".lab-results h2").innerText(), /cpu/);
  // WGSL allows division and sqrt to differ from the CPU's in the last bits; over 20 steps the
  // GPU run and the CPU reference stay together.
  const cli = cliToy(["--preset", "sparse-features", "--steps", "20"]);
  assert.ok(Math.abs(mmcs - cli.mmcs) < 1e-3, `page MMCS ${mmcs} vs CLI ${cli.mmcs}`);
  await page.screenshot({ path: path.join(shots, "6-lab-webgpu.png"), fullPage: true });
  // Every trained architecture's kernels run under the browser's WGSL compiler too.
  for (const preset of ["batchtopk", "jumprelu", "gated"]) {
    const got = await runLab(page, `#lab?preset=${preset}&steps=20&device=gpu`);
    const want = cliToy(["--preset", preset, "--steps", "20"]);
    assert.ok(Math.abs(got - want.mmcs) < 1e-3, `${preset}: page MMCS ${got} vs CLI ${want.mmcs}`);
  }
  await page.screenshot({ path: path.join(shots, "6b-lab-webgpu-gated.png"), fullPage: true });
  assert.deepEqual(errors, []);
  assert.deepEqual(gpuComplaints, []);
  await page.close();
});

test("the lab times the CPU and WebGPU on the lesson and trains on the faster", async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const started = Date.now();
  await runLab(page, "#lab?preset=superposition-2d");
  const seconds = (Date.now() - started) / 1000;
  const heading = await page.locator(".lab-results h2").innerText();
  // "cpu (wasm SIMD, 1 thread) — the faster here, timed: cpu (…) 2140.3 steps/s; SwiftShader… 4.8 steps/s"
  const match = heading.match(/Recovery (.+?) — the faster here, timed: (.+) ([\d.]+) steps\/s; (.+) ([\d.]+) steps\/s/);
  assert.ok(match, `the heading says what was timed: ${heading}`);
  const [, picked, first, firstRate, second, secondRate] = match;
  const faster = Number(firstRate) >= Number(secondRate) ? first : second;
  assert.equal(picked, faster, heading);
  assert.equal(await page.locator("#lab-status").innerText(), "Finished 1500 steps.");
  console.log(`superposition-2d, 1500 steps: ${heading}; ${seconds.toFixed(1)} s from load to the end`);
  await page.screenshot({ path: path.join(shots, "6c-lab-auto-device.png"), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test("the lab reports impossible settings next to the control and keeps the trained SAE", async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await page.goto(`${url}#lab?preset=sparse-features&steps=30&batch=64&k=banana&p=2`);
  await page.locator("#lab-k-error").waitFor();
  assert.match(await page.locator("#lab-k-error").innerText(), /'banana' is not a valid number/);
  // p=2 parses but is impossible: Start refuses it with the reason.
  await page.locator("#lab-k").fill("4");
  await page.locator("#lab-k").dispatchEvent("change");
  await page.locator("#lab-p").fill("0.03");
  await page.locator("#lab-p").dispatchEvent("change");
  await page.locator("#lab-start").click();
  await page.waitForFunction(() => document.querySelector("#lab-status")?.innerText.startsWith("Finished"), null, { timeout: 300_000 });
  const trained = await page.locator("#lab-mmcs").innerText();
  await page.locator("#lab-dict").fill("2");
  await page.locator("#lab-dict").dispatchEvent("change");
  await page.locator("#lab-start").click();
  await page.locator("#lab-error").waitFor();
  assert.match(await page.locator("#lab-error").innerText(), /k must be between 1 and dict \(2\)/);
  assert.equal(await page.locator("#lab-mmcs").innerText(), trained);
  assert.equal(await page.locator("#lab-download").isDisabled(), false);
  await page.screenshot({ path: path.join(shots, "7-lab-bad-setting.png"), fullPage: true });
  await page.close();
});

test("the toy model of superposition packs more features than dimensions when they are sparse", async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1400 } });
  // Its settings come from the URL like the lab's: a shared link opens on dense features.
  await page.goto(`${url}#lab?sp_sparsity=0&sp_features=5`);
  await page.locator("#sp-train").waitFor();
  assert.equal(await page.locator("#lab-sp_sparsity").inputValue(), "0");
  await page.locator("#sp-train").click();
  await page.locator("#sp-represented").filter({ hasText: "2 of 5 features" }).waitFor({ timeout: 30_000 });
  await page.locator("#lab-sp_sparsity").fill("0.95");
  await page.locator("#lab-sp_sparsity").dispatchEvent("change");
  assert.match(await page.evaluate(() => location.hash), /sp_sparsity=0\.95/);
  await page.locator("#sp-train").click();
  await page.locator("#sp-represented").filter({ hasText: "5 of 5 features" }).waitFor({ timeout: 30_000 });
  assert.equal(await page.locator("#sp-arrows line").count(), 5);
  await page.locator("#lab-sp_sparsity").fill("1.5");
  await page.locator("#lab-sp_sparsity").dispatchEvent("change");
  await page.locator("#sp-train").click();
  assert.match(await page.locator("#sp-error").innerText(), /sparsity must be in \[0, 1\)/);
  await page.locator("#lab-sp_features").fill("many");
  await page.locator("#lab-sp_features").dispatchEvent("change");
  assert.match(await page.locator("#lab-sp_features-error").innerText(), /not a valid number/);
  await page.locator("#lab-sp_features").fill("5");
  await page.locator("#lab-sp_features").dispatchEvent("change");
  await page.locator("#lab-sp_sparsity").fill("0.95");
  await page.locator("#lab-sp_sparsity").dispatchEvent("change");
  await page.locator("#sp-train").click();
  await page.locator("#sp-represented").waitFor();
  await page.screenshot({ path: path.join(shots, "8-superposition.png"), fullPage: true });
  await page.close();
});
