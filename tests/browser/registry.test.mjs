// SAEs by name in the page: the picker over SAELens's registry finds an SAE, and opening it
// downloads its model and its files from a stand-in for the Hub (repositories in the Hub's URL
// layout, subfolders included; the SAEs are tests/fixtures/hub's, made by SAELens's real loaders'
// fixture script), converts them in the page (Gemma Scope 2's params.safetensors + config.json; a
// SAELens folder with center_writing_weights from the registry), and shows features equal to the
// CLI's on the same files, with the feature's Neuronpedia link. The URL then holds release, SAE id,
// text and feature: opening it again shows the same view, from the cache, with no request to the
// Hub. The page reads tests/fixtures/hub/registry.json (the test releases) in place of the real
// registry.json.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { cli, freePort, launchBrowser, root, saelab, servePage, shots } from "./harness.mjs";

const work = path.join(os.tmpdir(), `saelab-registry-${process.pid}`);
const hubFixtures = path.join(root, "tests/fixtures/hub");
const registryFile = path.join(hubFixtures, "registry.json");
// The models the test releases name, random, of the SAEs' width (24).
const MODELS = {
  "google/gemma-3-270m": { family: "gemma3", tokenizer: "gemma", layers: "6" },
  gpt2: { family: "gpt2", tokenizer: "gpt_neox", layers: "2" },
};
let pageServer, hub, browser, hubUrl;
const requests = [];

/** A file of the stand-in Hub: a model folder of `work`, or a snapshot of the fixture cache. */
function hubFile(repo, file) {
  if (MODELS[repo]) return path.join(work, repo, file);
  const [org, name] = repo.split("/");
  const snapshots = path.join(hubFixtures, `models--${org}--${name}`, "snapshots");
  let revisions;
  try { revisions = readdirSync(snapshots); } catch { return undefined; }
  return revisions.length === 1 ? path.join(snapshots, revisions[0], file) : undefined;
}

/** The fixture folder of an SAE (for the CLI). */
const saeFolder = (repo, folder) => hubFile(repo, folder);

before(async () => {
  rmSync(work, { recursive: true, force: true });
  for (const [repo, m] of Object.entries(MODELS)) {
    execFileSync(saelab, [
      "random-model", "--family", m.family, "--out", path.join(work, repo),
      "--vocab-from", path.join(root, "tests/fixtures/tokenizers", m.tokenizer, "tokenizer.json"),
      "--layers", m.layers, "--width", "24", "--heads", "4", "--context", "64",
    ]);
  }
  // /{org}/{name}/resolve/main/{path…} (or /{name}/resolve/main/… for a repository without an
  // owner, as gpt2); anything it does not hold is a 404, as on the Hub.
  hub = http.createServer((req, res) => {
    requests.push(req.url);
    const m = decodeURIComponent(req.url).match(/^\/(.+?)\/resolve\/main\/(.+)$/);
    const file = m && !m[2].split("/").includes("..") ? hubFile(m[1], m[2]) : undefined;
    let size;
    try { size = file && statSync(file).isFile() && statSync(file).size; } catch { size = undefined; }
    if (size === undefined || size === false) {
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

/** A browser context (one Cache Storage for its pages) that reads the test registry. */
async function context() {
  const ctx = await browser.newContext();
  await ctx.route("**/registry.json", (route) => route.fulfill({ path: registryFile, contentType: "application/json" }));
  return ctx;
}

/** Waits for the run to show (or an error), and returns what the page shows. */
async function shown(page) {
  // The tokens say which feature colours them once it is selected (after the run itself).
  await page.waitForFunction(() => document.querySelector("#lm-tokens[data-feature]") || (document.querySelector("#lm-error")?.textContent ?? "") !== "", null, { timeout: 120_000 });
  const error = (await page.locator("#lm-error").count()) > 0 ? await page.locator("#lm-error").innerText() : "";
  assert.equal(error, "", "no error");
  return {
    feature: Number(await page.locator("#lm-tokens").getAttribute("data-feature")),
    acts: await page.locator("#lm-tokens .token").evaluateAll((els) => els.map((e) => Number(e.dataset.act))),
  };
}

/** The CLI's activations of `feature` on `text` for the same model and SAE files. */
function cliActs(repo, sae, text, feature) {
  const want = cli(["features", "--model", path.join(work, repo), "--sae", sae, "--text", text, "--feature", String(feature), "--device", "cpu"]);
  return want.feature.activations;
}

function assertClose(got, want, what) {
  assert.equal(got.length, want.length, `${what}: token count`);
  got.forEach((a, i) => assert.ok(Math.abs(a - want[i]) < 2e-3 * (1 + Math.abs(want[i])), `${what}, token ${i}: page ${a}, CLI ${want[i]}`));
}

const text = "The quick brown fox jumps over the lazy dog";

test("the registry picker finds an SAE, opens it with its model from the Hub, links to Neuronpedia, and its link reopens the view from the cache", async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // A link naming a repository opens on nothing (no bundled model) until asked.
  await page.goto(`${pageServer.url}#lm?base=${encodeURIComponent(hubUrl)}&repo=none`);
  await page.locator("#adapter").filter({ hasText: /WebGPU/ }).waitFor({ timeout: 60_000 });
  const registry = JSON.parse(readFileSync(registryFile));
  const total = registry.releases.reduce((n, r) => n + r.saes.length, 0);
  await page.locator("#lm-registry-count").filter({ hasText: /This build opens/ }).waitFor();
  const [, open, listed] = (await page.locator("#lm-registry-count").innerText()).match(/opens (\d+) of the (\d+) SAEs/).map(Number);
  assert.equal(listed, total);
  assert.ok(open > 0 && open <= total, `${open} of ${total}`);
  // The search narrows by words and an L0 bound; the matches are grouped by model.
  await page.locator("#lm-registry-search").fill("gemma-3-270m l0<25");
  await page.locator("#lm-registry-matches").filter({ hasText: "1 SAE match." }).waitFor();
  assert.equal(await page.locator("#lm-registry-results optgroup").getAttribute("label"), "google/gemma-3-270m");
  await page.locator("#lm-registry-search").fill("");
  await page.locator("#lm-registry-matches").filter({ hasText: `${open} SAEs match.` }).waitFor();
  await page.locator("#lm-registry-search").fill("270m small");
  await page.locator("#lm-registry-results").selectOption("test-gemma-scope-2-270m-pt/layer_5_width_16k_l0_small");
  await page.locator("#lm-registry-open").click();
  await page.waitForFunction(() => /hook_resid_post/.test(document.querySelector("#lm-sae-name")?.textContent ?? "") || (document.querySelector("#lm-error")?.textContent ?? "") !== "", null, { timeout: 120_000 });
  assert.equal((await page.locator("#lm-error").count()) > 0 ? await page.locator("#lm-error").innerText() : "", "");
  assert.match(await page.locator("#lm-sae-name").innerText(), /jumprelu 24 × 40 at blocks\.5\.hook_resid_post \(test-gemma-scope-2-270m-pt\/layer_5_width_16k_l0_small\)/);
  assert.match(await page.locator("#lm-model-name").innerText(), /gemma-3-270m\/resolve\/main — gemma3_text, 6 layers, width 24/);
  const saeFiles = await page.locator("#lm-sae-progress li").allInnerTexts();
  assert.ok(saeFiles.some((t) => t.includes("resid_post/layer_5_width_16k_l0_small/params.safetensors")), `${saeFiles}`);
  assert.ok(requests.some((u) => u === "/google/gemma-scope-2-270m-pt/resolve/main/resid_post/layer_5_width_16k_l0_small/config.json"));

  await page.locator("#lm-text").fill(text);
  await page.locator("#lm-run").click();
  const first = await shown(page);
  await page.screenshot({ path: path.join(shots, "22-registry-picker.png"), fullPage: true });
  const folder = saeFolder("google/gemma-scope-2-270m-pt", "resid_post/layer_5_width_16k_l0_small");
  assertClose(first.acts, cliActs("google/gemma-3-270m", folder, text, first.feature), "Gemma Scope 2");
  assert.equal(await page.locator("#lm-neuronpedia").getAttribute("href"), `https://www.neuronpedia.org/gemma-3-270m/5-gemmascope-2-res-16k/${first.feature}`);
  const link = page.url();
  assert.ok(link.includes("release=test-gemma-scope-2-270m-pt&sae=layer_5_width_16k_l0_small&text=The%20quick") && link.endsWith(`&feature=${first.feature}`), link);
  assert.deepEqual(errors, []);
  await page.close();

  // The link, in a new tab of the same browser: the same view, nothing asked of the Hub.
  const asked = requests.length;
  const again = await ctx.newPage();
  again.on("pageerror", (e) => errors.push(String(e)));
  await again.goto(link);
  const second = await shown(again);
  assert.equal(second.feature, first.feature);
  assert.deepEqual(second.acts, first.acts);
  assert.equal(await again.locator("#lm-text").inputValue(), text);
  assert.deepEqual(requests.slice(asked), [], "a second load comes from the cache");
  assert.ok((await again.locator("#lm-progress li").allInnerTexts()).every((t) => t.includes("(cached)")));
  assert.deepEqual(errors, []);
  await ctx.close();
});

test("a link opens a SAELens folder by name with its registry overrides (center_writing_weights); a name not in the registry is refused with the nearest ones", async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const base = `${pageServer.url}#lm?base=${encodeURIComponent(hubUrl)}`;
  const asked = requests.length;
  await page.goto(`${base}&release=test-gpt2-small-res-bj&sae=blocks.0.hook_resid_pre`);
  await page.locator("#lm-error").filter({ hasText: /no release 'test-gpt2-small-res-bj'.*did you mean 'test-gpt2-small-res-jb'/ }).waitFor({ timeout: 60_000 });
  assert.deepEqual(requests.slice(asked), [], "nothing was downloaded");
  await page.goto(`${base}&release=test-gpt2-small-res-jb&sae=blocks.0.hook_resid_pre&text=${encodeURIComponent(text)}&feature=3`);
  await page.reload();
  const run = await shown(page);
  assert.equal(run.feature, 3);
  // The registry's center_writing_weights is in the converted cfg, and the CLI, given the cache
  // folder, finds the same override in the bundled registry.
  const folder = saeFolder("jbloom/GPT2-Small-SAEs-Reformatted", "blocks.0.hook_resid_pre");
  assertClose(run.acts, cliActs("gpt2", folder, text, 3), "gpt2-small-res-jb");
  // The folder has no sparsity.safetensors: asked once, and the answer remembered.
  const sparsity = "/jbloom/GPT2-Small-SAEs-Reformatted/resolve/main/blocks.0.hook_resid_pre/sparsity.safetensors";
  assert.equal(requests.filter((u) => u === sparsity).length, 1);
  await page.reload();
  await shown(page);
  assert.equal(requests.filter((u) => u === sparsity).length, 1, "the 404 is remembered");
  assert.equal(await page.locator("#lm-neuronpedia").getAttribute("href"), "https://www.neuronpedia.org/gpt2-small/0-res-jb/3");
  assert.deepEqual(errors, []);
  await ctx.close();
});

test("a torch.save SAE opens by link: the GPT-2 attention SAE's NAME.pt and NAME_cfg.json, read in the page without running the pickle, at attn.hook_z", async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${pageServer.url}#lm?base=${encodeURIComponent(hubUrl)}&release=test-gpt2-small-hook-z-kk&sae=blocks.1.hook_z&text=${encodeURIComponent(text)}&feature=2`);
  const run = await shown(page);
  assert.equal(run.feature, 2);
  assert.match(await page.locator("#lm-sae-name").innerText(), /standard 24 × 40 at blocks\.1\.attn\.hook_z/);
  const repo = "ckkissane/attn-saes-gpt2-small-all-layers";
  const name = "gpt2-small_L1_Hcat_z_lr1.20e-03_l11.80e+00_ds40_v9";
  for (const file of [`${name}.pt`, `${name}_cfg.json`]) {
    assert.ok(requests.some((u) => decodeURIComponent(u) === `/${repo}/resolve/main/${file}`), `${file} asked of the Hub`);
  }
  assertClose(run.acts, cliActs("gpt2", saeFolder(repo, `${name}.pt`), text, 2), "gpt2-small-hook-z-kk");
  assert.ok(run.acts.some((a) => a > 0), "the feature fires somewhere");
  await page.screenshot({ path: path.join(shots, "23-registry-torch-save.png"), fullPage: true });
  assert.deepEqual(errors, []);
  await ctx.close();
});

test("a Gemma Scope 2 transcoder opens by link: it reads the MLP's normalised input, and its prediction is spliced in at the MLP's output, as the CLI does", async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const id = "layer_4_width_16k_l0_big_affine";
  await page.goto(`${pageServer.url}#lm?base=${encodeURIComponent(hubUrl)}&release=test-gemma-scope-2-270m-pt-transcoders&sae=${id}&text=${encodeURIComponent(text)}&feature=6`);
  const run = await shown(page);
  assert.equal(run.feature, 6);
  assert.match(await page.locator("#lm-sae-name").innerText(), /jumprelu_skip_transcoder 24 × 40 at blocks\.4\.hook_mlp_in → blocks\.4\.hook_mlp_out/);
  const folder = saeFolder("google/gemma-scope-2-270m-pt", `transcoder/${id}`);
  assertClose(run.acts, cliActs("google/gemma-3-270m", folder, text, 6), "the transcoder's features");
  assert.ok(run.acts.some((a) => a > 0), "the feature fires somewhere");
  await page.locator("#lm-ce-spliced").waitFor({ timeout: 120_000 });
  assert.equal(await page.locator("#lm-splice tr", { hasText: "hook" }).first().locator("td").innerText(), "blocks.4.hook_mlp_out");
  const want = cli(["splice", "--model", path.join(work, "google/gemma-3-270m"), "--sae", folder, "--text", text, "--device", "cpu"]);
  assert.equal(want.hook, "blocks.4.hook_mlp_out");
  for (const [id, key] of [["#lm-ce-clean", "ce_clean"], ["#lm-ce-spliced", "ce_spliced"], ["#lm-ce-zero", "ce_zero_ablation"]]) {
    const got = Number(await page.locator(id).innerText());
    assert.ok(Math.abs(got - want[key]) < 1e-3 * (1 + Math.abs(want[key])), `${key}: page ${got}, CLI ${want[key]}`);
  }
  await page.screenshot({ path: path.join(shots, "24-registry-transcoder.png"), fullPage: true });
  assert.deepEqual(errors, []);
  await ctx.close();
});

test("a model dropped from a folder named as the SAE's model, with the Hub's config.json, is used for it: nothing but config.json is downloaded; another model in a folder of that name is not", async () => {
  const ctx = await context();
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${pageServer.url}#lm?base=${encodeURIComponent(hubUrl)}&repo=none`);
  await page.locator("#adapter").filter({ hasText: /WebGPU/ }).waitFor({ timeout: 60_000 });
  await page.locator("#lm-registry-count").filter({ hasText: /This build opens/ }).waitFor();

  /** Drops `from`'s model files as a folder named `name` (Chromium's own drag: a directory entry). */
  const dropFolder = async (from, name) => {
    const outer = path.join(work, `drop-${name}-${path.basename(from)}`);
    mkdirSync(path.join(outer, name), { recursive: true });
    for (const f of ["config.json", "model.safetensors", "tokenizer.json"]) copyFileSync(path.join(from, f), path.join(outer, name, f));
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.locator("#lm-model-name").scrollIntoViewIfNeeded();
    const box = await page.locator("#lm-drop").boundingBox();
    const cdp = await ctx.newCDPSession(page);
    const data = { items: [], files: [path.join(outer, name)], dragOperationsMask: 1 };
    for (const type of ["dragEnter", "dragOver", "drop"]) {
      await cdp.send("Input.dispatchDragEvent", { type, x: box.x + box.width / 2, y: box.y + 20, data });
    }
  };
  const openSae = async () => {
    await page.locator("#lm-registry-search").fill("270m small resid_post");
    await page.locator("#lm-registry-results").selectOption("test-gemma-scope-2-270m-pt/layer_5_width_16k_l0_small");
    await page.locator("#lm-registry-open").click();
    await page.waitForFunction(() => /layer_5_width_16k_l0_small/.test(document.querySelector("#lm-sae-name")?.textContent ?? "") || (document.querySelector("#lm-error")?.textContent ?? "") !== "", null, { timeout: 120_000 });
    assert.equal((await page.locator("#lm-error").count()) > 0 ? await page.locator("#lm-error").innerText() : "", "");
  };
  const weights = "/google/gemma-3-270m/resolve/main/model.safetensors";

  // The Hub's gemma-3-270m, dropped as a folder of that name: taken for it.
  await dropFolder(path.join(work, "google/gemma-3-270m"), "gemma-3-270m");
  await page.locator("#lm-model-name").filter({ hasText: /^dropped folder — gemma3_text, 6 layers/ }).waitFor({ timeout: 60_000 });
  let asked = requests.length;
  await openSae();
  const during = requests.slice(asked);
  assert.ok(during.includes("/google/gemma-3-270m/resolve/main/config.json"), `the Hub's config.json is compared: ${during}`);
  assert.ok(!during.includes(weights), `the model's weights are not downloaded: ${during}`);
  assert.match(await page.locator("#lm-model-name").innerText(), /^dropped folder — gemma3_text.* · taken for google\/gemma-3-270m \(its folder's name and config.json are the Hub's\)$/);
  await page.locator("#lm-text").fill(text);
  await page.locator("#lm-run").click();
  const run = await shown(page);
  const folder = saeFolder("google/gemma-scope-2-270m-pt", "resid_post/layer_5_width_16k_l0_small");
  assertClose(run.acts, cliActs("google/gemma-3-270m", folder, text, run.feature), "on the dropped model");
  await page.screenshot({ path: path.join(shots, "25-registry-dropped-model.png"), fullPage: true });

  // Another model (GPT-2) in a folder of the same name: its config.json is not the Hub's, so the
  // Hub's model is downloaded.
  await dropFolder(path.join(work, "gpt2"), "gemma-3-270m");
  await page.locator("#lm-model-name").filter({ hasText: /^dropped folder — gpt2, 2 layers/ }).waitFor({ timeout: 60_000 });
  asked = requests.length;
  await openSae();
  // The SAE shown is still the one opened before: wait for the download to replace the model.
  await page.locator("#lm-model-name").filter({ hasText: /gemma-3-270m\/resolve\/main — gemma3_text, 6 layers/ }).waitFor({ timeout: 120_000 });
  assert.ok(requests.slice(asked).includes(weights), "the Hub's model is downloaded");
  assert.deepEqual(errors, []);
  await ctx.close();
});
