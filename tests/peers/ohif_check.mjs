// OHIF (served by Glia at /viewer) in headless Chromium, driven by playwright-core.
//
//   node ohif_check.mjs --base http://127.0.0.1:PORT --study UID \
//        --list-text 'NAME, AS SHOWN' --list-text 'STUDY DESCRIPTION' \
//        --out target/test-artifacts/ohif-viewer.png
//
// 1. /viewer (study list): the study appears (every --list-text is shown).
// 2. /viewer/viewer?StudyInstanceUIDs=UID: the viewport canvas appears and draws an
//    image that is not blank (grey-level statistics of the central half of the
//    canvas region of a screenshot: >= 32 levels, std-dev >= 20); no request to the node fails (status >= 400 or requestfailed).
// The screenshot is written to --out. One line per check, then `N passed, N failed`.
// Never downloads a browser: Chromium is /usr/bin/chromium (override: CHROMIUM).

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

const base = arg('base').replace(/\/$/, '');
const study = arg('study');
const listTexts = process.argv.flatMap((a, i) => (a === '--list-text' ? [process.argv[i + 1]] : []));
const out = arg('out');
// A Glia link token: the first page load carries it (?token=), Glia answers with an
// HttpOnly cookie, and OHIF's DICOMweb requests are authenticated by that cookie.
const token = arg('token', '');
const timeoutMs = Number(arg('timeout-ms', '90000'));
const results = { passed: 0, failed: 0 };

function report(ok, name, detail) {
  results[ok ? 'passed' : 'failed'] += 1;
  console.log(`${ok ? 'PASS' : 'FAIL'} ${name}${detail ? ` (${detail})` : ''}`);
}

const shortUrl = (u) => u.replace(base, '').replace(/[0-9.]{20,}/g, (m) => `…${m.slice(-6)}`);

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
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const failures = [];
  let requests = 0;
  page.on('response', (r) => {
    if (!r.url().startsWith(base)) return;
    requests += 1;
    if (r.status() >= 400) failures.push(`${r.request().method()} ${shortUrl(r.url())} -> ${r.status()}`);
  });
  page.on('requestfailed', (r) => {
    if (!r.url().startsWith(base)) return;
    failures.push(`${r.method()} ${shortUrl(r.url())} failed: ${r.failure()?.errorText}`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error') console.log(`  console.error: ${m.text().slice(0, 300)}`);
  });
  page.on('pageerror', (e) => console.log(`  pageerror: ${String(e).slice(0, 300)}`));

  // ---- 1. study list ------------------------------------------------------------
  try {
    await page.goto(`${base}/viewer${token ? `?token=${encodeURIComponent(token)}` : ''}`, { waitUntil: 'domcontentloaded', timeout: timeoutMs });
    await page.waitForFunction(
      (texts) => document.body && texts.every((t) => document.body.innerText.includes(t)),
      listTexts,
      { timeout: timeoutMs },
    );
    report(true, 'study list shows the study');
  } catch (e) {
    report(false, 'study list shows the study', String(e).split('\n')[0]);
    await page.screenshot({ path: out.replace(/\.png$/, '-list.png') }).catch(() => {});
  }
  // Let the list's requests finish: navigating away would abort them.
  await page.waitForLoadState('networkidle', { timeout: 15000 }).catch(() => {});
  const listFailures = failures.splice(0);
  report(listFailures.length === 0, 'study list: no failed request', listFailures.slice(0, 10).join('; '));

  // ---- 2. viewer ----------------------------------------------------------------
  await page.goto(`${base}/viewer/viewer?StudyInstanceUIDs=${study}`, {
    waitUntil: 'domcontentloaded',
    timeout: timeoutMs,
  });
  const canvasSel = '.viewport-element canvas, [data-viewport-uid] canvas, canvas.cornerstone-canvas';
  let box = null;
  try {
    await page.waitForSelector(canvasSel, { state: 'visible', timeout: timeoutMs });
    box = await page.locator(canvasSel).first().boundingBox();
    report(box && box.width > 50 && box.height > 50, 'viewport canvas appears',
      box ? `${Math.round(box.width)}x${Math.round(box.height)}` : 'no bounding box');
  } catch (e) {
    report(false, 'viewport canvas appears', String(e).split('\n')[0]);
  }

  // Poll until the canvas region shows an image (or time runs out).
  // Statistics of the central half of the canvas (the overlays sit in its corners).
  const stats = async () => {
    const clip = {
      x: box.x + box.width / 4,
      y: box.y + box.height / 4,
      width: box.width / 2,
      height: box.height / 2,
    };
    const png = await page.screenshot({ clip });
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
      let sum = 0;
      let sum2 = 0;
      let n = 0;
      for (let i = 0; i < d.length; i += 4) {
        const y = Math.round(0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]);
        levels.add(y);
        sum += y;
        sum2 += y * y;
        n += 1;
      }
      const mean = sum / n;
      return { levels: levels.size, mean, std: Math.sqrt(Math.max(0, sum2 / n - mean * mean)) };
    }, png.toString('base64'));
  };
  // OHIF's first-visit tour pops up over the viewport: dismiss it.
  // So does the "investigational use" banner, over the bottom of the viewport.
  const skipTour = async () => {
    for (const label of ['Skip all', 'Confirm and hide']) {
      await page.getByText(label, { exact: true }).click({ timeout: 500 }).catch(() => {});
    }
  };
  let s = { levels: 0, mean: 0, std: 0 };
  if (box) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      await skipTour();
      s = await stats();
      if (s.levels >= 32 && s.std >= 20) break;
      await page.waitForTimeout(1000);
    }
    // Let the remaining requests (thumbnails, prefetch) settle before judging them.
    await page.waitForLoadState('networkidle', { timeout: 15000 }).catch(() => {});
  }
  await skipTour();
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, await page.screenshot({ fullPage: false }));
  console.log(`screenshot: ${out}`);
  report(s.levels >= 32 && s.std >= 20, 'viewport is not blank',
    `${s.levels} grey levels, mean ${s.mean.toFixed(1)}, std-dev ${s.std.toFixed(1)}`);
  const viewFailures = failures.splice(0);
  report(viewFailures.length === 0, 'viewer: no failed request',
    viewFailures.length ? viewFailures.slice(0, 10).join('; ') : `${requests} responses from the node`);
  exitCode = results.failed === 0 ? 0 : 1;
} catch (e) {
  console.log(`FAIL unexpected error: ${e && e.stack ? e.stack : e}`);
  results.failed += 1;
} finally {
  await browser.close();
}
console.log(`${results.passed} passed, ${results.failed} failed`);
process.exit(exitCode);
