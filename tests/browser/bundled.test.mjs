// The offline first open: the page, served by the README's server, opens the language-model tab on
// the model and SAEs bundled in www/models/ with no network. Every request that is not to the
// page's own server is cut off (and counted: there must be none), so nothing can come from the
// internet; the test then reads what a person sees: the model's facts, the SAE, the coloured
// tokens, the splice metrics, and switches to another bundled SAE.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { cli, launchBrowser, root, servePage, shots } from "./harness.mjs";

let server, browser;

before(async () => {
  server = await servePage();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  server?.close();
});

test("the language-model tab opens on the bundled model and SAE with no network", async () => {
  const context = await browser.newContext({ viewport: { width: 1500, height: 1300 } });
  const outside = [];
  const origin = new URL(server.url).origin;
  await context.route("**/*", (route) => {
    if (route.request().url().startsWith(origin)) return route.continue();
    outside.push(route.request().url());
    return route.abort("internetdisconnected");
  });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${server.url}#lm`);
  await page.locator("#adapter").filter({ hasText: /WebGPU/ }).waitFor({ timeout: 60_000 });

  const config = JSON.parse(readFileSync(path.join(root, "www/models/kjv-gpt2/config.json"), "utf8"));
  await page.locator("#lm-model-name").filter({ hasText: /models\/kjv-gpt2/ }).waitFor({ timeout: 120_000 });
  assert.match(await page.locator("#lm-model-name").innerText(), new RegExp(`${config.n_layer} layers, width ${config.n_embd}, ${config.n_head} heads, vocab ${config.vocab_size}`));
  await page.locator("#lm-sae-name").filter({ hasText: /bundled topk-1024/ }).waitFor({ timeout: 60_000 });
  assert.match(await page.locator("#lm-sae-name").innerText(), /topk 256 × 1024 at blocks\.2\.hook_resid_pre/);

  // The sample text ran: tokens, coloured by a feature that fires on them, and the splice metrics.
  await page.locator("#lm-ce-clean").waitFor({ timeout: 180_000 });
  // The bundled SAEs were trained with the BOS first: it is put first and shown apart.
  assert.equal(await page.locator("#lm-tokens .token.special").count(), 1);
  const tokens = await page.locator("#lm-tokens .token:not(.special)").allInnerTexts();
  assert.equal(tokens.join(""), "And God said, Let there be light: and there was light.");
  const acts = await page.locator("#lm-tokens .token").evaluateAll((els) => els.map((e) => Number(e.dataset.act)));
  assert.ok(acts.some((a) => a > 0), `the colouring feature fires somewhere: ${acts}`);
  const ce = Number(await page.locator("#lm-ce-clean").innerText());
  assert.ok(ce > 0.5 && ce < 8, `clean CE ${ce} nats on Bible text for a model with held-out loss ~3.7`);
  await page.screenshot({ path: path.join(shots, "10-bundled-offline.png"), fullPage: true });

  // Dashboards over the first 380 tokens of the bundled held-out text (3 contexts): the selected
  // feature's density, maximum and top example equal the CLI's CPU reference on the same sample.
  await page.locator("#lm-sample-tokens").fill("380");
  await page.locator("#lm-sample-tokens").dispatchEvent("change");
  await page.locator("#lm-dashboards").click();
  await page.locator("#lm-dashboard").waitFor({ timeout: 300_000 });
  assert.match(await page.locator("#lm-sample-progress").getAttribute("value"), /^3$/);
  assert.match(await page.locator("#lm-sample-status").innerText(), /Dashboards over 380 sample tokens computed in [\d.]+ s on WebGPU/);
  const feature = Number(await page.locator("#lm-dashboard").getAttribute("data-feature"));
  const model = path.join(root, "www/models/kjv-gpt2");
  const want = cli(["dashboard", "--model", model, "--sae", path.join(model, "saes/topk-1024"), "--corpus", path.join(model, "heldout.txt"),
    "--tokens", "380", "--feature", String(feature), "--device", "cpu"]);
  const density = Number((await page.locator("#lm-dash-density").innerText()).replace("%", "")) / 100;
  assert.ok(Math.abs(density - want.density) <= 1.5 / 380, `density: page ${density}, CLI ${want.density}`);
  const max = Number(await page.locator("#lm-dash-max").innerText());
  assert.ok(Math.abs(max - want.max_activation) <= 2e-3 * (1 + want.max_activation), `max: page ${max}, CLI ${want.max_activation}`);
  if (want.top.length > 0) {
    assert.equal(await page.locator("#lm-dash-top mark").first().textContent(), want.top[0].token.replace(/\n/g, "↵"));
  }
  assert.equal(await page.locator("#lm-dash-nearest li").count(), 6);
  // The feature list, sorted by max activation, and a feature chosen from it.
  await page.locator("#lm-sort").selectOption("max");
  const maxima = await page.locator("#lm-feature-list tr td:nth-child(3)").allInnerTexts();
  assert.ok(maxima.length > 3 && maxima.map(Number).every((v, i, a) => i === 0 || a[i - 1] >= v), `${maxima}`);
  const second = await page.locator("#lm-feature-list button").nth(1).getAttribute("data-feature");
  await page.locator("#lm-feature-list button").nth(1).click();
  await page.locator(`#lm-dashboard[data-feature="${second}"]`).waitFor({ timeout: 30_000 });
  // Its features matched in the 4096-latent TopK SAE by decoder cosine, most similar first.
  await page.locator("#lm-compare").selectOption("topk-4096");
  await page.locator("#lm-dash-matched li").nth(5).waitFor({ timeout: 60_000 });
  const cosines = (await page.locator("#lm-dash-matched li").allInnerTexts()).map((t) => Number(t.split(" ")[1]));
  assert.ok(cosines.every((c, i) => c <= 1 && (i === 0 || cosines[i - 1] >= c)), `${cosines}`);
  await page.screenshot({ path: path.join(shots, "11-bundled-dashboard.png"), fullPage: true });

  // Another bundled SAE: a BatchTopK one (saved as JumpReLU), four times wider.
  await page.locator("#lm-bundled-sae").selectOption("batchtopk-4096");
  await page.locator("#lm-sae-name").filter({ hasText: /jumprelu 256 × 4096 .*bundled batchtopk-4096/ }).waitFor({ timeout: 60_000 });

  // Back to the first SAE: its dashboards over the same sample open with it, from IndexedDB, not
  // recomputed, with the same figures.
  await page.locator("#lm-bundled-sae").selectOption("topk-1024");
  await page.locator("#lm-sae-name").filter({ hasText: /bundled topk-1024/ }).waitFor({ timeout: 60_000 });
  await page.locator("#lm-sample-status").filter({ hasText: /Dashboards over 380 sample tokens restored from this browser's storage/ }).waitFor({ timeout: 60_000 });
  await page.locator("#lm-feature").fill(String(feature));
  await page.locator("#lm-feature").dispatchEvent("change");
  await page.locator(`#lm-dashboard[data-feature="${feature}"]`).waitFor({ timeout: 30_000 });
  assert.equal(Number((await page.locator("#lm-dash-density").innerText()).replace("%", "")) / 100, density);
  assert.equal(Number(await page.locator("#lm-dash-max").innerText()), max);
  assert.deepEqual(outside, [], "no request left the page's own server");
  assert.deepEqual(errors, []);
  await context.close();
});
