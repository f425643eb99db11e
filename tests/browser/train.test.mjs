// Training an SAE on the bundled model's activations in the page, on WebGPU: progress and live
// evaluations, Pause and Resume, a bad setting reported in place, the result exported in SAELens
// format (the downloaded files load in the CLI with their hook and model) and opened in the view.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { pageSession, saelab, shots } from "./harness.mjs";

const session = pageSession("train");

test("train an SAE on the bundled model in the page, pause, resume, export and open it", async () => {
  const context = await session.browser.newContext({ viewport: { width: 1500, height: 1400 }, acceptDownloads: true });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${session.server.url}#lm`);
  await page.locator("#lm-sae-name").filter({ hasText: /bundled topk-1024/ }).waitFor({ timeout: 180_000 });

  const set = async (id, value) => {
    await page.locator(id).fill(value);
    await page.locator(id).dispatchEvent("change");
  };
  // A setting that cannot work is reported in place; nothing starts.
  await set("#tr-k", "100");
  await set("#tr-dict", "64");
  await page.locator("#tr-start").click();
  await page.locator("#tr-error").filter({ hasText: /k must be between 1 and dict \(64\)/ }).waitFor();

  // 8 steps of 256 tokens, evaluated every step (held-out L0, FVU, dead fraction, CE recovered).
  await set("#tr-k", "4");
  await set("#tr-tokens", "2048");
  await set("#tr-batch", "256");
  await page.locator("#tr-start").click();
  await page.locator("#tr-evals tr").nth(1).waitFor({ timeout: 300_000 });
  await page.locator("#tr-pause").click();
  await page.locator("#tr-status").filter({ hasText: /Paused at step/ }).waitFor({ timeout: 120_000 });
  const pausedAt = Number((await page.locator("#tr-progress").getAttribute("value")));
  assert.ok(pausedAt > 0 && pausedAt < 2048, `paused after ${pausedAt} tokens`);
  await page.locator("#tr-resume").click();
  await page.locator("#tr-status").filter({ hasText: /Trained: 8 steps/ }).waitFor({ timeout: 300_000 });
  assert.equal(await page.locator("#tr-progress").getAttribute("value"), "2048");
  const rows = await page.locator("#tr-evals tr").evaluateAll((trs) => trs.slice(1).map((tr) => Array.from(tr.cells, (c) => c.textContent)));
  assert.ok(rows.length >= 2, `${rows}`);
  const last = rows[rows.length - 1];
  assert.equal(last[0], "8");
  assert.equal(Number(last[2]), 4, "TopK k = 4: L0 is 4");
  assert.ok(Number(last[3]) < 1.2 && Number.isFinite(Number(last[5])), `FVU ${last[3]}, CE recovered ${last[5]}`);
  assert.match(await page.locator("#tr-rate").innerText(), /2048 \/ 2048 tokens · \d+ tokens\/s/);
  await page.screenshot({ path: path.join(shots, "12-train-in-page.png"), fullPage: true });

  // Export: two files in SAELens format that the CLI loads, with the hook and the model's name.
  const downloads = [];
  page.on("download", (d) => downloads.push(d));
  await page.locator("#tr-export").click();
  for (let i = 0; i < 50 && downloads.length < 2; i++) await page.waitForTimeout(100);
  assert.deepEqual(downloads.map((d) => d.suggestedFilename()).sort(), ["cfg.json", "sae_weights.safetensors"]);
  const saved = path.join(session.work, "sae");
  mkdirSync(saved, { recursive: true });
  for (const d of downloads) await d.saveAs(path.join(saved, d.suggestedFilename()));
  const info = String(execFileSync(saelab, ["info", saved]));
  assert.match(info, /blocks\.2\.hook_resid_pre/);
  assert.match(info, /d_sae\s+64\n/);
  assert.match(info, /model_name\s+kjv-gpt2/);

  // Opened in the view above: it becomes the SAE the text runs through.
  await page.locator("#tr-open").click();
  await page.locator("#lm-sae-name").filter({ hasText: /topk 256 × 64 at blocks\.2\.hook_resid_pre \(trained here\)/ }).waitFor({ timeout: 60_000 });
  assert.deepEqual(errors, []);
  await context.close();
});
