// OHIF (served by Glia at /viewer) shows a DICOM SEG: headless Chromium, playwright-core.
//
//   node ohif_seg_check.mjs --url 'http://127.0.0.1:PORT/viewer/viewer?StudyInstanceUIDs=UID' \
//        --seg-description 'SERIES DESCRIPTION OF THE SEG' \
//        --reference-description 'SERIES DESCRIPTION OF THE SERIES THE SEG REFERENCES' \
//        --segment 'LABEL 1' --segment 'LABEL 2' --segment 'LABEL 3' \
//        --out target/test-artifacts/ohif-seg.png
//
// The viewer URL is built by the caller (the one place that would add credentials).
// Checks, one line each, then `N passed, N failed`:
// 1. the viewport draws the default (reference MR) series;
// 2. the study browser lists a SEG thumbnail (modality SEG, the given description);
// 3. double-clicking it loads the SEG (OHIF asks "open this Segmentation?" only
//    once the SEG's bits are loaded and matched to a referenced series) and "Yes"
//    hydrates it, and the viewport then shows the SEG's reference series;
// 4. the segmentation panel lists every --segment label;
// 5. the overlay is drawn: pixels in the segments' hues appear in the viewport, and
//    stepping through the slices finds one where all three segments' hues show;
// 6. no request to the node failed; no console error / page error (besides the
//    known noise listed in NOISE).
// The screenshot after hydration is written to --out. Chromium is /usr/bin/chromium
// (override: CHROMIUM); never downloads a browser.

import { createRequire } from 'node:module';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, 'node_modules', 'x.js'));
const { chromium } = require('playwright-core');

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) {
    if (dflt === undefined) throw new Error(`--${name} is required`);
    return dflt;
  }
  return process.argv[i + 1];
}
const args = (name) => process.argv.flatMap((a, i) => (a === `--${name}` ? [process.argv[i + 1]] : []));

const url = arg('url');
const origin = new URL(url).origin;
const segDescription = arg('seg-description');
const referenceDescription = arg('reference-description');
const segments = args('segment');
const out = arg('out');
const timeoutMs = Number(arg('timeout-ms', '120000'));
const results = { passed: 0, failed: 0 };

// Console errors / page errors known to be harmless (not about the SEG, not the
// node's fault), each with its reason. Runs of OHIF 3.13.2 in headless Chromium on
// SwiftShader logged no console error at all on this path (study load, SEG
// thumbnail, hydration, slice stepping), so nothing is filtered: every console
// error fails the check. Add a pattern only with the reason it is harmless.
const NOISE = [];

function report(ok, name, detail) {
  results[ok ? 'passed' : 'failed'] += 1;
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${detail ? ` (${detail})` : ''}`);
}
const first = (e) => String(e).split('\n')[0];
const shortUrl = (u) => u.replace(origin, '').replace(/[0-9.]{20,}/g, (m) => `…${m.slice(-6)}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    // WebGL on the software rasteriser (no GPU on CI); cornerstone needs it.
    '--use-angle=swiftshader',
    '--enable-unsafe-swiftshader',
  ],
});

let exitCode = 1;
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  const failures = [];
  const consoleErrors = [];
  const filtered = [];
  let requests = 0;
  page.on('response', (r) => {
    if (!r.url().startsWith(origin)) return;
    requests += 1;
    if (r.status() >= 400) failures.push(`${r.request().method()} ${shortUrl(r.url())} -> ${r.status()}`);
  });
  page.on('requestfailed', (r) => {
    if (!r.url().startsWith(origin)) return;
    failures.push(`${r.method()} ${shortUrl(r.url())} failed: ${r.failure()?.errorText}`);
  });
  const onError = (kind, text) => {
    const t = `${kind}: ${text.slice(0, 400)}`;
    if (NOISE.some((re) => re.test(text))) {
      filtered.push(t);
    } else {
      consoleErrors.push(t);
      console.log(`  ${t}`);
    }
  };
  page.on('console', (m) => {
    if (m.type() === 'error') onError('console.error', m.text());
  });
  page.on('pageerror', (e) => onError('pageerror', String(e && e.stack ? e.stack : e)));

  // OHIF's first-visit tour and the "investigational use" banner cover the viewport.
  const skipTour = async () => {
    for (const label of ['Skip all', 'Confirm and hide']) {
      await page.getByText(label, { exact: true }).click({ timeout: 500 }).catch(() => {});
    }
  };

  // Statistics of the viewport canvas region of a screenshot: grey levels, and the
  // pixels in the hues of the segments' colours (red, yellow, green: the MR is grey,
  // OHIF's own UI is grey, white and blue). Fill blends with the image, so pixels
  // count by hue with a modest saturation.
  const canvasSel = '.viewport-element canvas, [data-viewport-uid] canvas, canvas.cornerstone-canvas';
  const stats = async (box) => {
    const png = await page.screenshot({ clip: box });
    return page.evaluate(async (b64) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const c = document.createElement('canvas');
      c.width = img.width;
      c.height = img.height;
      const g = c.getContext('2d');
      g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      const levels = new Set();
      const hues = { red: 0, yellow: 0, green: 0, blue: 0, other: 0 };
      for (let i = 0; i < d.length; i += 4) {
        const [r, gg, b] = [d[i], d[i + 1], d[i + 2]];
        levels.add(Math.round(0.299 * r + 0.587 * gg + 0.114 * b));
        const max = Math.max(r, gg, b);
        const span = max - Math.min(r, gg, b);
        if (span < 40 || span < 0.2 * max) continue;
        let h;
        if (max === r) h = (60 * ((gg - b) / span) + 360) % 360;
        else if (max === gg) h = 60 * ((b - r) / span) + 120;
        else h = 60 * ((r - gg) / span) + 240;
        if (h < 25 || h >= 330) hues.red += 1;
        else if (h >= 40 && h < 75) hues.yellow += 1;
        else if (h >= 85 && h < 170) hues.green += 1;
        else if (h >= 180 && h < 270) hues.blue += 1;
        else hues.other += 1;
      }
      return { levels: levels.size, overlay: hues.red + hues.yellow + hues.green, hues };
    }, png.toString('base64'));
  };

  // ---- 1. the viewer draws the study ---------------------------------------------
  await page.goto(url, { waitUntil: 'domcontentloaded', timeout: timeoutMs });
  let box = null;
  try {
    await page.waitForSelector(canvasSel, { state: 'visible', timeout: timeoutMs });
    box = await page.locator(canvasSel).first().boundingBox();
  } catch (e) {
    report(false, 'viewport canvas appears', first(e));
  }
  let before = { levels: 0, overlay: 0, hues: {} };
  if (box) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      await skipTour();
      before = await stats(box);
      if (before.levels >= 32) break;
      await page.waitForTimeout(1000);
    }
  }
  report(before.levels >= 32, 'viewport draws the MR series', `${before.levels} grey levels`);

  // ---- 2. the study browser lists the SEG ------------------------------------------
  // A broken SEG that the node did not store, or that OHIF's SOP class handler
  // refuses, leaves no thumbnail with modality SEG.
  const thumbs = page.locator('[data-cy="study-browser-thumbnail"], [data-cy="study-browser-thumbnail-no-image"]');
  const segThumb = thumbs.filter({ hasText: segDescription });
  let listed = false;
  try {
    await segThumb.first().waitFor({ state: 'visible', timeout: timeoutMs });
    const modality = (await segThumb.first().locator('[data-cy="series-modality-label"]').innerText()).trim();
    listed = modality === 'SEG';
    report(listed, 'study browser lists the SEG series', `modality ${modality}, ${await thumbs.count()} thumbnails`);
  } catch (e) {
    const shown = await thumbs.allInnerTexts().catch(() => []);
    report(false, 'study browser lists the SEG series', `${first(e)}; thumbnails: ${shown.join(' | ').replace(/\s+/g, ' ')}`);
  }

  // ---- 3. load (hydrate) the SEG onto the viewport ---------------------------------
  // OHIF's SEG viewport asks "Do you want to open this Segmentation?" only after it
  // has fetched the SEG, unpacked its bits and matched it to the referenced series:
  // a SEG without ReferencedSeriesSequence, with frames off the source's planes, or
  // with bad pixel data never gets here (the prompt does not appear or an error is logged).
  let hydrated = false;
  if (listed) {
    try {
      await skipTour();
      await page.waitForLoadState('networkidle', { timeout: 15000 }).catch(() => {});
      if (box) before = await stats(box);
      await segThumb.first().dblclick();
      const prompt = page.getByText('Do you want to open this Segmentation?');
      await prompt.waitFor({ state: 'visible', timeout: timeoutMs });
      await page.getByRole('button', { name: 'Yes', exact: true }).click();
      await prompt.waitFor({ state: 'hidden', timeout: 20000 });
      hydrated = true;
      report(true, 'SEG loads onto the viewport (hydration prompt answered Yes)');
      // OHIF draws the SEG over the series its ReferencedSeriesSequence names; the
      // viewport's overlay text shows that series' description.
      const grid = page.locator('[data-cy="viewport-grid"]');
      const shown = await grid.innerText().catch(() => '');
      report(shown.includes(referenceDescription), 'viewport shows the SEG over its reference series',
        `${referenceDescription} in viewport text: ${shown.replace(/\s+/g, ' ').slice(0, 120)}`);
    } catch (e) {
      report(false, 'SEG loads onto the viewport (hydration prompt answered Yes)', first(e));
    }
  } else {
    report(false, 'SEG loads onto the viewport', 'no SEG thumbnail');
  }

  // ---- 4. the segmentation panel lists the segments --------------------------------
  // Labels come from SegmentSequence > SegmentLabel: missing or renumbered segments fail.
  let missing = segments;
  if (hydrated) {
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      const t = await page.evaluate(() => document.body.innerText);
      missing = segments.filter((s) => !t.includes(s));
      if (missing.length === 0) break;
      // The panel may be collapsed: open it by its tab.
      await page.locator('[data-cy="panelSegmentation-btn"], [data-cy="panelSegmentationWithTools-btn"]')
        .first().click({ timeout: 500 }).catch(() => {});
      await page.waitForTimeout(1000);
    }
  }
  report(hydrated && missing.length === 0, 'segmentation panel lists the segments',
    missing.length ? `missing: ${missing.join('; ')}` : segments.join('; '));

  // ---- 5. the overlay is drawn -----------------------------------------------------
  // The MR and the viewport's text are grey: coloured pixels are the labelmap. An
  // empty mask, frames on the wrong slices or wrong geometry draw none here.
  let after = { levels: 0, overlay: 0, hues: {} };
  if (hydrated && box) {
    box = (await page.locator(canvasSel).first().boundingBox()) || box;
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      after = await stats(box);
      if (after.overlay - before.overlay >= 200) break;
      await page.waitForTimeout(1000);
    }
    await page.waitForLoadState('networkidle', { timeout: 15000 }).catch(() => {});
    after = await stats(box);
  }
  report(after.overlay - before.overlay >= 200, 'segmentation overlay is drawn',
    `segment-coloured pixels ${before.overlay} -> ${after.overlay}; by hue ${JSON.stringify(after.hues)}`);

  // ---- 5b. every segment is drawn --------------------------------------------------
  // OHIF opens the SEG at its first segmented slice (the tumour's edge: often oedema
  // only). Step through the slices (OHIF's hotkeys: Down = next image, Up = previous)
  // until one shows all three segments' hues; a segment whose frames are lost or
  // misplaced never shows. The screenshot is taken on that slice.
  const hueOk = (h) => h.red >= 20 && h.yellow >= 20 && h.green >= 20;
  let all = hydrated && box && hueOk(after.hues) ? after : null;
  if (hydrated && box && !all) {
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    const sweep = async (key, steps) => {
      for (let i = 0; i < steps; i += 1) {
        await page.keyboard.press(key);
        await page.waitForTimeout(150);
        const st = await stats(box);
        if (hueOk(st.hues)) return st;
      }
      return null;
    };
    all = (await sweep('ArrowDown', 40)) || (await sweep('ArrowUp', 80));
  }
  report(all !== null, 'every segment is drawn on some slice',
    all ? `by hue ${JSON.stringify(all.hues)}` : 'no slice shows red, yellow and green');
  await page.waitForTimeout(500);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, await page.screenshot({ fullPage: false }));
  console.log(`screenshot: ${out}`);

  // ---- 6. no failed request, no console error --------------------------------------
  report(failures.length === 0, 'no failed request',
    failures.length ? failures.slice(0, 10).join('; ') : `${requests} responses from the node`);
  report(consoleErrors.length === 0, 'no console error',
    consoleErrors.length ? consoleErrors.slice(0, 5).join(' || ') : `${filtered.length} known-noise message(s) filtered`);
  for (const f of filtered) console.log(`  filtered ${f}`);
  exitCode = results.failed === 0 ? 0 : 1;
} catch (e) {
  console.log(`FAIL unexpected error: ${e && e.stack ? e.stack : e}`);
  results.failed += 1;
} finally {
  await browser.close();
}
console.log(`${results.passed} passed, ${results.failed} failed`);
process.exit(exitCode);
