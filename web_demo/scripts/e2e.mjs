// Drives the built page in headless Chromium through playwright-core (the system browser; playwright never
// downloads one). Used by tests/test_web_demo.py; usable by hand:
//
//   node scripts/e2e.mjs '{"url": "http://127.0.0.1:8000/?image=face.png", "mode": "image", "out": "/tmp/e2e"}'
//
// Options (one JSON argument): url; mode "image" (wait for the still image's result) or "camera" (wait for
// `frames` camera frames); chromium (default /usr/bin/chromium); fakeVideo (a .y4m/.mjpeg file the fake camera
// plays); benchmark {warmupRuns, runs} (also run the benchmark); out (folder: result.json, page.png).
// Exit code 2 on bad options, 1 when the page reports an error (its message on stderr).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

let opts;
try {
  opts = JSON.parse(process.argv[2] ?? '');
} catch (e) {
  console.error(`e2e.mjs: expected one JSON argument with url, mode, out (${e.message})`);
  process.exit(2);
}
const { url, mode = 'image', out, frames = 10, fakeVideo, benchmark, timeoutMs = 120000 } = opts;
if (!url || !out || !['image', 'camera'].includes(mode)) {
  console.error(`e2e.mjs: need url, out and mode image|camera; got ${JSON.stringify(opts)}`);
  process.exit(2);
}
const executablePath = opts.chromium ?? '/usr/bin/chromium';
// A fresh profile each run; no network features, no sandbox (runs as root in CI containers); playwright adds
// --headless itself, and --user-data-dir from launchPersistentContext's first argument.
const profile = mkdtempSync(join(tmpdir(), 'tfalign-chromium-'));
const args = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
if (mode === 'camera') {
  args.push('--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream');
  if (fakeVideo) args.push(`--use-file-for-fake-video-capture=${fakeVideo}`);
}
mkdirSync(out, { recursive: true });
const browser = await chromium.launchPersistentContext(profile, {
  executablePath, args, headless: true, timeout: 60000, viewport: { width: 1280, height: 900 },
});
const logs = [];
let code = 0;
try {
  const page = browser.pages()[0] ?? await browser.newPage();
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  page.on('request', (r) => { if (!r.url().startsWith(new URL(url).origin) && !/^(data|blob):/.test(r.url())) logs.push(`OFFSITE ${r.url()}`); });
  await page.goto(url);
  await page.waitForFunction(() => window.tfalignDemo && ['running', 'error'].includes(window.tfalignDemo.state),
    null, { timeout: timeoutMs });
  if (mode === 'camera') {
    await page.waitForFunction((n) => window.tfalignDemo.state === 'error' || window.tfalignDemo.frames >= n,
      frames, { timeout: timeoutMs });
    await page.evaluate(() => window.tfalignDemo.stop());
  }
  const result = await page.evaluate(() => ({ error: window.tfalignDemo.error, last: window.tfalignDemo.last,
    frames: window.tfalignDemo.frames, trackedFrames: window.tfalignDemo.trackedFrames }));
  if (!result.error && benchmark) {
    result.benchmark = await page.evaluate((b) => window.tfalignDemo.benchmark({ ...b, download: false }), benchmark);
  }
  result.logs = logs;
  // The canvas alone, at its own resolution: pixels map 1:1 to frame pixels.
  const canvas = await page.$('#view');
  result.canvasPng = join(out, 'canvas.png');
  await canvas.screenshot({ path: result.canvasPng });
  result.canvasCss = await page.evaluate(() => { const r = document.getElementById('view').getBoundingClientRect(); return [r.width, r.height]; });
  await page.screenshot({ path: join(out, 'page.png') });
  writeFileSync(join(out, 'result.json'), JSON.stringify(result));
  if (result.error) {
    console.error(`page error: ${result.error}`);
    code = 1;
  }
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
