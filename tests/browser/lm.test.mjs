// The language-model view in headless Chromium with WebGPU, against a model folder served over
// HTTP on 127.0.0.1 in the Hugging Face URL layout ({base}/{repo}/resolve/main/{file}), so the
// download, progress and cache path is the one real users take. The model is a small random GPT-2
// with GPT-2's real tokenizer (`saelab random-model`), with a random TopK SAE at one of its hooks.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { cli, freePort, launchBrowser, root, saelab, servePage, shots } from "./harness.mjs";

const work = path.join(os.tmpdir(), `saelab-lm-${process.pid}`);
const modelDir = path.join(work, "tiny-gpt2");
const saeDir = path.join(work, "sae");
const hook = "blocks.1.hook_resid_pre";
let pageServer, hub, browser, url, hubUrl;
const requests = [];
let breakNextWeights = true;

before(async () => {
  rmSync(work, { recursive: true, force: true });
  execFileSync(saelab, [
    "random-model", "--out", modelDir, "--vocab-from", path.join(root, "tests/fixtures/gpt2_tokenizer/tokenizer.json"),
    "--layers", "2", "--width", "32", "--heads", "4", "--context", "64", "--sae-out", saeDir, "--hook", hook, "--d-sae", "96", "--k", "4",
  ]);
  // A stand-in for huggingface.co: /ok/{repo}/resolve/main/{file} serves the folder; /broken/…
  // cuts model.safetensors off half-way once; anything else is a 404. CORS as the Hub sends it.
  hub = http.createServer((req, res) => {
    requests.push(req.url);
    const m = req.url.match(/^\/(ok|broken)\/tiny\/gpt2\/resolve\/main\/([\w.]+)$/);
    const file = m && path.join(modelDir, m[2]);
    let size;
    try { size = file && statSync(file).size; } catch { size = undefined; }
    if (!size) {
      res.writeHead(404, { "access-control-allow-origin": "*" });
      return res.end("not found");
    }
    const body = readFileSync(file);
    res.writeHead(200, { "content-length": String(size), "access-control-allow-origin": "*", "content-type": "application/octet-stream" });
    if (m[1] === "broken" && m[2] === "model.safetensors" && breakNextWeights) {
      breakNextWeights = false;
      res.write(body.subarray(0, size >> 1), () => res.destroy());
      return;
    }
    res.end(body);
  });
  const hubPort = await freePort();
  await new Promise((r) => hub.listen(hubPort, "127.0.0.1", r));
  hubUrl = `http://127.0.0.1:${hubPort}`;
  pageServer = await servePage();
  url = pageServer.url;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  pageServer?.close();
  hub?.close();
  rmSync(work, { recursive: true, force: true });
});

const text = "Hello <b>world</b> & friends: déjà vu 東京 😀";

test("download with progress and cache, run text on WebGPU, inspect and steer a feature", async () => {
  const context = await browser.newContext({ viewport: { width: 1500, height: 1300 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${url}#lm?base=${hubUrl}/broken&repo=tiny/gpt2`);
  await page.locator("#adapter").filter({ hasText: /WebGPU/ }).waitFor({ timeout: 60_000 });
  assert.equal(await page.locator("#lm-base").inputValue(), `${hubUrl}/broken`);

  // The first download of the weights dies half-way: a message, and nothing cached of that file.
  await page.locator("#lm-download").click();
  await page.locator("#lm-error").filter({ hasText: /broke off/ }).waitFor({ timeout: 60_000 });
  assert.match(await page.locator("#lm-error").innerText(), /press Download to retry/);
  const weightsUrl = `${hubUrl}/broken/tiny/gpt2/resolve/main/model.safetensors`;
  const cached = (u) => page.evaluate(async (u) => !!(await (await caches.open("saelab-models-v1")).match(u)), u);
  assert.equal(await cached(weightsUrl), false, "a half-downloaded file is not cached");
  assert.equal(await cached(`${hubUrl}/broken/tiny/gpt2/resolve/main/config.json`), true);

  // Retry: the whole file arrives, the model loads.
  await page.locator("#lm-download").click();
  await page.locator("#lm-model-name").filter({ hasText: /2 layers, width 32, 4 heads, vocab 50257/ }).waitFor({ timeout: 120_000 });
  assert.equal(await cached(weightsUrl), true);
  assert.match(await page.locator('#lm-progress li[data-file="model.safetensors"]').innerText(), /6\.\d \/ 6\.\d MB/);

  // A reload takes every file from the cache: no new request reaches the server.
  const before = requests.length;
  await page.reload();
  await page.locator("#adapter").filter({ hasText: /WebGPU/ }).waitFor({ timeout: 60_000 });
  await page.locator("#lm-download").click();
  await page.locator("#lm-model-name").filter({ hasText: /2 layers/ }).waitFor({ timeout: 120_000 });
  assert.equal(requests.length, before, `requests after reload: ${requests.slice(before)}`);
  assert.equal(await page.locator("#lm-progress li", { hasText: "(cached)" }).count(), 3);

  // The SAE, then text: tokens shown as text (never HTML), GPU results = the CLI's CPU reference.
  await page.locator("#lm-sae-files").setInputFiles([path.join(saeDir, "cfg.json"), path.join(saeDir, "sae_weights.safetensors")]);
  await page.locator("#lm-sae-name").filter({ hasText: hook }).waitFor();
  await page.locator("#lm-text").fill(text);
  await page.locator("#lm-run").click();
  await page.locator("#lm-ce-clean").waitFor({ timeout: 120_000 });
  assert.match(await page.locator("#lm-status").innerText(), /on WebGPU/);
  console.log(`first run: ${await page.locator("#lm-status").innerText()}`);
  assert.equal(await page.locator("#lm-tokens b").count(), 0, "token text is not parsed as HTML");
  // The SAE was trained with BOS first (SAELens's default): the BOS is put first and shown apart.
  assert.equal(await page.locator("#lm-bos").isChecked(), true);
  assert.equal(await page.locator("#lm-tokens .token.special").count(), 1);
  assert.equal(await page.locator("#lm-tokens .token").first().getAttribute("class"), "token special");
  const tokenTexts = await page.locator("#lm-tokens .token:not(.special)").allInnerTexts();
  assert.equal(tokenTexts.join(""), text.replace(/ /g, " "));
  const splice = cli(["splice", "--model", modelDir, "--sae", saeDir, "--text", text, "--device", "cpu"]);
  const num = async (id) => Number(await page.locator(id).innerText());
  for (const [id, key] of [["#lm-ce-clean", "ce_clean"], ["#lm-ce-spliced", "ce_spliced"], ["#lm-ce-zero", "ce_zero_ablation"], ["#lm-kl", "kl"]]) {
    assert.ok(Math.abs((await num(id)) - splice[key]) < 2e-3, `${key}: page ${await num(id)} vs CLI ${splice[key]}`);
  }
  assert.equal(splice.n_tokens, tokenTexts.length + 1, "the text's tokens after the BOS");
  // The colouring feature's activation per token equals the CLI's.
  const feature = Number(await page.locator("#lm-tokens[data-feature]").getAttribute("data-feature"));
  const detail = cli(["features", "--model", modelDir, "--sae", saeDir, "--text", text, "--feature", String(feature), "--device", "cpu"]);
  const shownActs = await page.locator("#lm-tokens .token").evaluateAll((els) => els.map((e) => Number(e.dataset.act)));
  shownActs.forEach((a, i) => assert.ok(Math.abs(a - detail.feature.activations[i]) < 2e-3, `token ${i}: ${a} vs ${detail.feature.activations[i]}`));
  assert.equal(await page.locator("#lm-lens-top li").count(), 8);

  assert.equal(await page.locator("#lm-lens-top li code").first().textContent(), detail.feature.logit_lens.top[0].text);

  // A token's features, and choosing one of them.
  await page.locator("#lm-tokens .token").nth(1).click();
  await page.locator("#lm-token-features li").first().waitFor();
  const other = await page.locator("#lm-token-features button").last().getAttribute("data-feature");
  await page.locator("#lm-token-features button").last().click();
  await page.locator("#lm-feature-index").filter({ hasText: new RegExp(`^${other}$`) }).waitFor();

  // Steering beside the unsteered continuation; the unsteered one is the CLI's greedy text.
  await page.locator("#lm-alpha").fill("60");
  await page.locator("#lm-alpha").dispatchEvent("change");
  await page.locator("#lm-new-tokens").fill("5");
  await page.locator("#lm-new-tokens").dispatchEvent("change");
  await page.locator("#lm-generate").click();
  await page.locator("#lm-steered").waitFor({ timeout: 120_000 });
  const generated = cli(["generate", "--model", modelDir, "--text", text, "--tokens", "5", "--sae", saeDir, "--steer", `${other}=60`, "--device", "cpu"]);
  assert.equal((await page.locator("#lm-unsteered").textContent()), generated.unsteered.text);
  assert.equal((await page.locator("#lm-steered").textContent()), generated.steered.text);
  // Clamping the feature, sampled at temperature 0.8 with a seed: the CLI's run again.
  await page.locator("#lm-steer-mode").selectOption("clamp");
  await page.locator("#lm-alpha").fill("5");
  await page.locator("#lm-alpha").dispatchEvent("change");
  await page.locator("#lm-temperature").fill("0.8");
  await page.locator("#lm-temperature").dispatchEvent("change");
  await page.locator("#lm-seed").fill("3");
  await page.locator("#lm-seed").dispatchEvent("change");
  const previous = await page.locator("#lm-steered").textContent();
  await page.locator("#lm-generate").click();
  await page.waitForFunction((p) => document.querySelector("#lm-steered")?.textContent !== p || document.querySelector("#lm-error"), previous, { timeout: 300_000 });
  assert.equal(await page.locator("#lm-error").count(), 0, "no error while generating");
  const sampled = cli(["generate", "--model", modelDir, "--text", text, "--tokens", "5", "--sae", saeDir, "--clamp", `${other}=5`, "--temperature", "0.8", "--seed", "3", "--device", "cpu"]);
  assert.equal(await page.locator("#lm-unsteered").textContent(), sampled.unsteered.text);
  assert.equal(await page.locator("#lm-steered").textContent(), sampled.steered.text);
  await page.screenshot({ path: path.join(shots, "9-language-model.png"), fullPage: true });

  // A repository that does not exist: a message; the loaded model stays.
  await page.locator("#lm-base").fill(`${hubUrl}/ok`);
  await page.locator("#lm-base").dispatchEvent("change");
  await page.locator("#lm-repo").fill("no/such-model");
  await page.locator("#lm-repo").dispatchEvent("change");
  await page.locator("#lm-download").click();
  await page.locator("#lm-error").filter({ hasText: /HTTP 404/ }).waitFor({ timeout: 30_000 });
  assert.match(await page.locator("#lm-model-name").innerText(), /2 layers/);

  // Dropping the model's files on the panel (a synthetic drop carries files, not a folder entry).
  const drop = (names) => page.evaluate(async ({ base, names }) => {
    const dt = new DataTransfer();
    for (const n of names) {
      const bytes = await (await fetch(`${base}/${n}`)).arrayBuffer();
      dt.items.add(new File([bytes], n));
    }
    document.querySelector("#lm-drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, { base: `${hubUrl}/ok/tiny/gpt2/resolve/main`, names });
  await drop(["config.json", "model.safetensors"]);
  await page.locator("#lm-error").filter({ hasText: /tokenizer\.json is missing \(dropped folder\)/ }).waitFor({ timeout: 30_000 });
  await drop(["config.json", "model.safetensors", "tokenizer.json"]);
  await page.locator("#lm-model-name").filter({ hasText: /^dropped folder — gpt2, 2 layers/ }).waitFor({ timeout: 60_000 });

  // A real folder dragged from the desktop (Chromium's own drag, through the DevTools protocol,
  // so the drop carries a directory entry that the page walks), with the files one level down.
  const nested = path.join(work, "outer");
  mkdirSync(path.join(nested, "tiny-gpt2"), { recursive: true });
  for (const f of ["config.json", "model.safetensors", "tokenizer.json"]) copyFileSync(path.join(modelDir, f), path.join(nested, "tiny-gpt2", f));
  // First a download, so the model's name is not "dropped folder" before the drop.
  await page.locator("#lm-repo").fill("tiny/gpt2");
  await page.locator("#lm-repo").dispatchEvent("change");
  await page.locator("#lm-download").click();
  await page.locator("#lm-model-name").filter({ hasText: /tiny\/gpt2\/resolve\/main — gpt2, 2 layers/ }).waitFor({ timeout: 60_000 });
  // Drag events take viewport coordinates: bring the panel's top into view first.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.locator("#lm-model-name").scrollIntoViewIfNeeded();
  const box = await page.locator("#lm-drop").boundingBox();
  const cdp = await context.newCDPSession(page);
  const data = { items: [], files: [nested], dragOperationsMask: 1 };
  for (const type of ["dragEnter", "dragOver", "drop"]) {
    await cdp.send("Input.dispatchDragEvent", { type, x: box.x + box.width / 2, y: box.y + 20, data });
  }
  await page.locator("#lm-model-name").filter({ hasText: /^dropped folder — gpt2, 2 layers/ }).waitFor({ timeout: 60_000 });
  assert.deepEqual(errors, []);
  await context.close();
});
