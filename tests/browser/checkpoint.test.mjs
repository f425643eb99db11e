// Training in the page survives what a browser does to it: a reload half-way resumes from the
// run's last checkpoint in IndexedDB (and finishes, and exports); a storage quota too small for a
// checkpoint is reported while training goes on and the SAE still exports; a corpus file that is
// empty, binary or not UTF-8 is refused in place.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { pageSession, saelab, shots } from "./harness.mjs";

const session = pageSession("checkpoint");

async function openTrainPanel(context) {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${session.server.url}#lm`);
  await page.locator("#lm-sae-name").filter({ hasText: /bundled topk-1024/ }).waitFor({ timeout: 180_000 });
  return { page, errors };
}

async function settings(page, values) {
  for (const [id, value] of Object.entries(values)) {
    await page.locator(id).fill(value);
    await page.locator(id).dispatchEvent("change");
  }
}

/** Exports the trained SAE and returns what `saelab info` says of it. */
async function exportAndInspect(page, name) {
  const downloads = [];
  page.on("download", (d) => downloads.push(d));
  await page.locator("#tr-export").click();
  for (let i = 0; i < 50 && downloads.length < 2; i++) await page.waitForTimeout(100);
  assert.deepEqual(downloads.map((d) => d.suggestedFilename()).sort(), ["cfg.json", "sae_weights.safetensors"]);
  const saved = path.join(session.work, name);
  mkdirSync(saved, { recursive: true });
  for (const d of downloads) await d.saveAs(path.join(saved, d.suggestedFilename()));
  return String(execFileSync(saelab, ["info", saved]));
}

const evalRows = (page) => page.locator("#tr-evals tr").evaluateAll((trs) => trs.slice(1).map((tr) => Array.from(tr.cells, (c) => c.textContent)));

test("a reload half-way through training resumes from the last checkpoint", async () => {
  const context = await session.browser.newContext({ viewport: { width: 1500, height: 1400 }, acceptDownloads: true });
  let { page, errors } = await openTrainPanel(context);
  // 8 steps of 128 tokens, evaluated (and checkpointed) every 2 steps.
  await settings(page, { "#tr-k": "4", "#tr-dict": "64", "#tr-tokens": "1024", "#tr-batch": "128" });
  await page.locator("#tr-start").click();
  await page.locator("#tr-checkpoint").filter({ hasText: /Checkpointed at step \d+/ }).waitFor({ timeout: 300_000 });
  assert.match(await page.locator("#tr-checkpoint").innerText(), /a reload can resume from here/);
  assert.deepEqual(errors, []);

  // Reload while it trains: the panel offers the saved run, as of its last checkpoint.
  await page.reload();
  await page.locator("#lm-sae-name").filter({ hasText: /bundled topk-1024/ }).waitFor({ timeout: 180_000 });
  const saved = page.locator("#tr-saved");
  await saved.waitFor({ timeout: 60_000 });
  const offer = await saved.innerText();
  assert.match(offer, /topk with 64 latents at blocks\.2\.hook_resid_pre of kjv-gpt2, corpus heldout\.txt \(bundled\), checkpointed at step \d+ of 8/);
  const savedStep = Number(offer.match(/checkpointed at step (\d+) of 8/)[1]);
  assert.ok(savedStep >= 1 && savedStep < 8, `saved at step ${savedStep}`);
  await page.screenshot({ path: path.join(shots, "13-saved-run-offered.png"), fullPage: true });

  // Resumed: the settings and evaluations come back, and training goes on from that step.
  await page.locator("#tr-restore").click();
  await page.locator("#tr-checkpoint").filter({ hasText: `Restored from the checkpoint at step ${savedStep}` }).waitFor({ timeout: 120_000 });
  assert.equal(await page.locator("#tr-dict").inputValue(), "64");
  assert.equal(await page.locator("#tr-tokens").inputValue(), "1024");
  const restoredRows = await evalRows(page);
  // Checkpoints follow each evaluation (steps 2, 4, 6) and 15 s of training time.
  const evaluatedBefore = Math.floor(savedStep / 2);
  assert.deepEqual(restoredRows.map((r) => r[0]).slice(0, evaluatedBefore), Array.from({ length: evaluatedBefore }, (_, i) => String(2 * (i + 1))));
  await page.locator("#tr-status").filter({ hasText: /Trained: 8 steps/ }).waitFor({ timeout: 400_000 });
  assert.equal(await page.locator("#tr-progress").getAttribute("value"), "1024");
  const rows = await evalRows(page);
  assert.deepEqual(rows.map((r) => r[0]), ["2", "4", "6", "8"], "each evaluation once: the saved ones and those after the resume");
  assert.equal(Number(rows[3][2]), 4, "TopK k = 4: L0 is 4");
  assert.ok(Number(rows[3][3]) < Number(rows[0][3]), `held-out FVU falls: ${rows.map((r) => r[3])}`);
  assert.match(await page.locator("#tr-checkpoint").innerText(), /Checkpointed at step 8/);
  const info = await exportAndInspect(page, "resumed");
  assert.match(info, /d_sae\s+64\n/);
  assert.match(info, /model_name\s+kjv-gpt2/);
  await page.screenshot({ path: path.join(shots, "14-resumed-run-trained.png"), fullPage: true });

  // The finished run stays saved; Discard removes it from the browser's storage.
  await page.reload();
  await page.locator("#lm-sae-name").filter({ hasText: /bundled topk-1024/ }).waitFor({ timeout: 180_000 });
  await page.locator("#tr-saved").filter({ hasText: /checkpointed at step 8 of 8/ }).waitFor({ timeout: 60_000 });
  const storedKeys = () =>
    page.evaluate(
      () =>
        new Promise((ok, fail) => {
          const open = indexedDB.open("saelab");
          open.onerror = () => fail(open.error);
          open.onsuccess = () => {
            const keys = open.result.transaction("saved").objectStore("saved").getAllKeys();
            keys.onsuccess = () => ok(keys.result.sort());
          };
        }),
    );
  assert.deepEqual(await storedKeys(), ["lm-train/checkpoint", "lm-train/corpus"]);
  await page.locator("#tr-discard").click();
  await page.locator("#tr-saved").waitFor({ state: "hidden" });
  assert.deepEqual(await storedKeys(), [], "a discarded run is gone");
  assert.deepEqual(errors, []);
  await context.close();
});

test("a bad corpus file is refused in place, and a full storage quota does not stop training", async () => {
  const context = await session.browser.newContext({ viewport: { width: 1500, height: 1400 }, acceptDownloads: true });
  const { page, errors } = await openTrainPanel(context);
  await settings(page, { "#tr-k": "4", "#tr-dict": "64", "#tr-tokens": "512", "#tr-batch": "256" });

  // Corpus files that are not text: refused by name before anything is harvested.
  for (const [name, bytes, message] of [
    ["empty.txt", Buffer.alloc(0), /empty\.txt: .*empty/],
    ["picture.txt", Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]), /picture\.txt: .*binary file/],
    ["latin1.txt", Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x6e, 0x6f, 0x69, 0x72]), /latin1\.txt: .*not UTF-8/],
  ]) {
    await page.locator("#tr-corpus").setInputFiles({ name, mimeType: "text/plain", buffer: bytes });
    await page.locator("#tr-start").click();
    await page.locator("#tr-error").filter({ hasText: message }).waitFor({ timeout: 30_000 });
    assert.equal(await page.locator("#tr-evals tr").count(), 1, "nothing trained");
  }
  await page.locator("#tr-corpus").setInputFiles([]);

  // A quota too small for any checkpoint: each attempt says so, training goes on to the end, and
  // the trained SAE exports.
  const cdp = await context.newCDPSession(page);
  await cdp.send("Storage.overrideQuotaForOrigin", { origin: new URL(session.server.url).origin, quotaSize: 1024 });
  await page.locator("#tr-start").click();
  await page.locator("#tr-status").filter({ hasText: /Trained: 2 steps/ }).waitFor({ timeout: 400_000 });
  const note = await page.locator("#tr-checkpoint").innerText();
  assert.match(note, /Could not checkpoint at step 2: the browser's storage quota for this page is used up \(QuotaExceededError\)\. Training goes on and nothing trained is lost/);
  assert.equal(await page.locator("#tr-checkpoint").getAttribute("class"), "error");
  assert.equal(await page.locator("#tr-error").count(), 0, "training itself did not fail");
  const info = await exportAndInspect(page, "quota");
  assert.match(info, /d_sae\s+64\n/);
  await page.screenshot({ path: path.join(shots, "15-checkpoint-quota.png"), fullPage: true });
  assert.deepEqual(errors, []);
  await context.close();
});
