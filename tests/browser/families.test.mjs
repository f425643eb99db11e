// Model families in the page: a Gemma-3-shaped (sharded) and a Llama-3-shaped model (random bf16 weights,
// each with a tokenizer in its family's style from tests/fixtures/tokenizers and a random TopK SAE
// at one of its hooks, all from `saelab random-model`), downloaded from a stand-in for the Hub in
// its URL layout, run on WebGPU with the SAE attached: the page shows the family and the tokens
// (the BOS apart), and each token's activation of the colouring feature equals the CLI's CPU
// reference on the same files.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { cli, freePort, launchBrowser, root, saelab, servePage, shots } from "./harness.mjs";

const work = path.join(os.tmpdir(), `saelab-families-${process.pid}`);
// The Gemma-3-shaped one is sharded as the Hub serves large models (index + shards, no
// model.safetensors: the page falls back to the index on the 404).
const FAMILIES = [
  { family: "gemma3", tokenizer: "gemma", modelType: "gemma3_text", hook: "blocks.1.hook_resid_post", shards: ["--shard-bytes", "60000"] },
  { family: "llama3", tokenizer: "llama3", modelType: "llama", hook: "blocks.0.ln2.hook_normalized", shards: [] },
  // Gemma 3 from 4B up: the text model of a multimodal checkpoint (its vision tower never read).
  { family: "gemma3-vlm", tokenizer: "gemma", modelType: "gemma3", hook: "blocks.1.hook_mlp_out", shards: [] },
];
let pageServer, hub, browser, hubUrl;
const requests = [];

before(async () => {
  rmSync(work, { recursive: true, force: true });
  for (const f of FAMILIES) {
    execFileSync(saelab, [
      "random-model", "--family", f.family, "--dtype", "bf16", "--out", path.join(work, f.family),
      "--vocab-from", path.join(root, "tests/fixtures/tokenizers", f.tokenizer, "tokenizer.json"),
      "--layers", "2", "--width", "48", "--heads", "4", "--context", "64",
      "--sae-out", path.join(work, `${f.family}-sae`), "--hook", f.hook, "--d-sae", "64", "--k", "4", ...f.shards,
    ]);
  }
  // /{family}/model/resolve/main/{file} serves that family's folder; anything else is a 404.
  hub = http.createServer((req, res) => {
    requests.push(req.url);
    const m = req.url.match(/^\/([\w-]+)\/model\/resolve\/main\/([\w.-]+)$/);
    const file = m && path.join(work, m[1], m[2]);
    let size;
    try { size = file && statSync(file).size; } catch { size = undefined; }
    if (!size) {
      res.writeHead(404, { "access-control-allow-origin": "*" });
      return res.end("not found");
    }
    res.writeHead(200, { "content-length": String(size), "access-control-allow-origin": "*", "content-type": "application/octet-stream" });
    res.end(readFileSync(file));
  });
  const port = await freePort();
  await new Promise((r) => hub.listen(port, "127.0.0.1", r));
  hubUrl = `http://127.0.0.1:${port}`;
  pageServer = await servePage();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  pageServer?.close();
  hub?.close();
  rmSync(work, { recursive: true, force: true });
});

const text = "The quick brown fox: déjà vu 日本語 😀";

for (const f of FAMILIES) {
  test(`a ${f.family}-shaped bf16 model runs in the page with an SAE at ${f.hook}`, async () => {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${pageServer.url}#lm?base=${encodeURIComponent(`${hubUrl}/${f.family}`)}&repo=model`);
    await page.locator("#adapter").filter({ hasText: /WebGPU/ }).waitFor({ timeout: 60_000 });
    await page.locator("#lm-download").click();
    // The model loads, or the page says why.
    const loaded = new RegExp(`— ${f.modelType}, 2 layers, width 48, 4 heads`);
    await page.waitForFunction(
      (source) => new RegExp(source).test(document.querySelector("#lm-model-name")?.textContent ?? "") || (document.querySelector("#lm-error")?.textContent ?? "") !== "",
      loaded.source, { timeout: 120_000 });
    const shownError = (await page.locator("#lm-error").count()) > 0 ? await page.locator("#lm-error").innerText() : "";
    assert.equal(shownError, "", "no error while loading");
    assert.match(await page.locator("#lm-model-name").innerText(), loaded);
    // The weights streamed to the GPU: only norms (1-D tensors) passed through wasm memory, and
    // the GPU holds about 2 bytes a parameter (these tiny models' per-column epilogue
    // parameters, 12 bytes an output, make up to 1.25 ×; the large model below is held to 1.1 ×).
    const memory = await page.locator("#lm-model-memory").evaluate((e) => ({ ...e.dataset }));
    const [gpuBytes, throughWasm, weightBytes] = [memory.gpuBytes, memory.throughWasm, memory.weightBytes].map(Number);
    console.log(`${f.family}: ${JSON.stringify(memory)}`);
    assert.ok(weightBytes > 0 && throughWasm > 0 && throughWasm * 50 < weightBytes, `through wasm ${throughWasm} of ${weightBytes}`);
    assert.ok(gpuBytes <= 1.25 * weightBytes && gpuBytes >= weightBytes, `GPU ${gpuBytes} for ${weightBytes}`);
    assert.match(await page.locator("#lm-model-memory").innerText(), /on the GPU; .* passed through the page's memory/);
    const files = await page.locator("#lm-progress li").allInnerTexts();
    if (f.shards.length > 0) {
      assert.ok(files.some((t) => t.includes("model.safetensors.index.json")), `the index was fetched: ${files}`);
      assert.ok(files.filter((t) => /model-0000\d-of-0000\d\.safetensors/.test(t)).length >= 2, `the shards were fetched: ${files}`);
    }
    const saeDir = path.join(work, `${f.family}-sae`);
    await page.locator("#lm-sae-files").setInputFiles([path.join(saeDir, "cfg.json"), path.join(saeDir, "sae_weights.safetensors")]);
    await page.locator("#lm-sae-name").filter({ hasText: f.hook }).waitFor();
    await page.locator("#lm-text").fill(text);
    await page.locator("#lm-run").click();
    await page.locator("#lm-ce-clean").waitFor({ timeout: 120_000 });
    assert.match(await page.locator("#lm-status").innerText(), /on WebGPU/);
    // The BOS first, shown apart; the text's own tokens spell it.
    assert.equal(await page.locator("#lm-tokens .token.special").count(), 1);
    const texts = await page.locator("#lm-tokens .token:not(.special)").allInnerTexts();
    assert.equal(texts.join(""), text);
    const feature = Number(await page.locator("#lm-tokens[data-feature]").getAttribute("data-feature"));
    const modelDir = path.join(work, f.family);
    const want = cli(["features", "--model", modelDir, "--sae", saeDir, "--text", text, "--feature", String(feature), "--device", "cpu"]);
    const shown = await page.locator("#lm-tokens .token").evaluateAll((els) => els.map((e) => Number(e.dataset.act)));
    assert.equal(shown.length, want.tokens.length);
    assert.equal(want.tokens[0].special, true);
    shown.forEach((a, i) => assert.ok(Math.abs(a - want.feature.activations[i]) < 2e-3 * (1 + Math.abs(want.feature.activations[i])), `token ${i}: page ${a}, CLI ${want.feature.activations[i]}`));
    assert.ok(want.feature.activations.some((a) => a > 0), "the colouring feature fires somewhere");
    const splice = cli(["splice", "--model", modelDir, "--sae", saeDir, "--text", text, "--device", "cpu"]);
    const ce = Number(await page.locator("#lm-ce-clean").innerText());
    assert.ok(Math.abs(ce - splice.ce_clean) < 2e-3 * (1 + splice.ce_clean), `clean CE: page ${ce}, CLI ${splice.ce_clean}`);
    await page.screenshot({ path: path.join(shots, `20-family-${f.family}.png`), fullPage: true });
    assert.deepEqual(errors, []);
    await page.close();
  });
}

// A model larger than the page's whole wasm memory loads and runs: its weights went from the
// download (Cache Storage) to the GPU without passing through wasm memory. Then the cached
// files are counted, and cleared by the control that says so.
test("a model larger than the page's wasm memory loads, and the model cache can be cleared", async () => {
  const dir = path.join(work, "big");
  execFileSync(saelab, [
    "random-model", "--family", "llama3", "--dtype", "bf16", "--out", dir,
    "--vocab-from", path.join(root, "tests/fixtures/tokenizers/llama3/tokenizer.json"),
    "--layers", "10", "--width", "1024", "--heads", "8", "--context", "64", "--shard-bytes", "100000000",
    "--sae-out", path.join(work, "big-sae"), "--hook", "blocks.9.hook_resid_post", "--d-sae", "64", "--k", "4",
  ]);
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${pageServer.url}#lm?base=${encodeURIComponent(`${hubUrl}/big`)}&repo=model`);
  await page.locator("#adapter").filter({ hasText: /WebGPU/ }).waitFor({ timeout: 60_000 });
  await page.locator("#lm-download").click();
  await page.waitForFunction(
    () => /— llama, 10 layers, width 1024/.test(document.querySelector("#lm-model-name")?.textContent ?? "") || (document.querySelector("#lm-error")?.textContent ?? "") !== "",
    null, { timeout: 300_000 });
  const shownError = (await page.locator("#lm-error").count()) > 0 ? await page.locator("#lm-error").innerText() : "";
  assert.equal(shownError, "", "no error while loading");
  const memory = await page.locator("#lm-model-memory").evaluate((e) => ({ ...e.dataset }));
  const [weightBytes, throughWasm, wasmMemory, gpuBytes] = [memory.weightBytes, memory.throughWasm, memory.wasmMemory, memory.gpuBytes].map(Number);
  console.log(`big: ${JSON.stringify(memory)}`);
  assert.ok(weightBytes > 200e6, `${weightBytes} bytes of weights`);
  assert.ok(gpuBytes <= 1.1 * weightBytes, `GPU ${gpuBytes} for ${weightBytes}`);
  assert.ok(wasmMemory < weightBytes, `wasm memory ${wasmMemory} is not smaller than the ${weightBytes} bytes of weights`);
  assert.ok(throughWasm * 1000 < weightBytes, `${throughWasm} bytes passed through wasm memory`);
  // It runs: an SAE at its last layer, the text's clean CE as the CLI's CPU reference has it.
  const saeDir = path.join(work, "big-sae");
  await page.locator("#lm-sae-files").setInputFiles([path.join(saeDir, "cfg.json"), path.join(saeDir, "sae_weights.safetensors")]);
  await page.locator("#lm-sae-name").filter({ hasText: "blocks.9.hook_resid_post" }).waitFor();
  const short = "The quick brown fox";
  await page.locator("#lm-text").fill(short);
  await page.locator("#lm-run").click();
  await page.locator("#lm-ce-clean").waitFor({ timeout: 300_000 });
  const splice = cli(["splice", "--model", dir, "--sae", saeDir, "--text", short, "--device", "cpu"]);
  const ce = Number(await page.locator("#lm-ce-clean").innerText());
  assert.ok(Math.abs(ce - splice.ce_clean) < 2e-3 * (1 + splice.ce_clean), `clean CE: page ${ce}, CLI ${splice.ce_clean}`);
  // The downloads are cached, counted, and cleared.
  const total = page.locator("#lm-cache-total");
  await total.filter({ hasText: /[1-9]\d* files/ }).waitFor();
  const cachedMb = Number((await total.innerText()).match(/^([\d.]+) MB/)[1]);
  assert.ok(cachedMb >= Math.floor(weightBytes / 1e5) / 10, `cached ${cachedMb} MB, ${weightBytes} bytes of weights`);
  await page.screenshot({ path: path.join(shots, "21-family-large.png"), fullPage: true });
  await page.locator("#lm-cache-clear").click();
  await total.filter({ hasText: "0.0 MB in 0 files" }).waitFor();
  assert.deepEqual(errors, []);
  await page.close();
});

// Without WebGPU the CPU reference needs a model's f32 weights in wasm memory: a model too large
// for it (Llama-3.1-8B's shape) is refused once its config.json is read, saying what would fit,
// and none of its weight files is requested.
test("without WebGPU a model too large for the page's memory is refused before its weights download", async () => {
  const dir = path.join(work, "huge");
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "config.json"), JSON.stringify({
    model_type: "llama", vocab_size: 128256, hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32,
    num_attention_heads: 32, num_key_value_heads: 8, max_position_embeddings: 8192, bos_token_id: 0, eos_token_id: 1,
  }));
  copyFileSync(path.join(root, "tests/fixtures/tokenizers/llama3/tokenizer.json"), path.join(dir, "tokenizer.json"));
  const context = await browser.newContext();
  await context.addInitScript(() => Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined }));
  const page = await context.newPage();
  await page.goto(`${pageServer.url}#lm?base=${encodeURIComponent(`${hubUrl}/huge`)}&repo=model`);
  await page.locator("#adapter").filter({ hasText: /WebGPU is not available/ }).waitFor({ timeout: 60_000 });
  requests.length = 0;
  await page.locator("#lm-download").click();
  const error = page.locator("#lm-error");
  await error.waitFor({ timeout: 60_000 });
  const message = await error.innerText();
  assert.match(message, /8\.\d\dB parameters/, message);
  assert.match(message, /without WebGPU/, message);
  assert.match(message, /nothing was downloaded/, message);
  assert.deepEqual(requests.filter((u) => u.startsWith("/huge/")).map((u) => u.split("/").pop()).sort(), ["config.json", "tokenizer.json"]);
  await context.close();
});
