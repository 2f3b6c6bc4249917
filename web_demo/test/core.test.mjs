// The page's contract math against the shared vectors the Python, Kotlin and Swift code are checked with:
// tests/golden/app_cases.json (crop window, input encoding, decoding, percentiles) and one_euro.json.
// Run: `npm run test:core` (node --test), also from tests/test_web_demo.py.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ContractError, parseContract } from '../src/core/contract.js';
import { LandmarkEstimator } from '../src/core/estimator.js';
import { cropRGB, cropWindow, decodeLandmarks, encodeInput, pointsBox, rint } from '../src/core/geometry.js';
import { LandmarkSmoother, OneEuroFilter } from '../src/core/smoothing.js';
import { RollingLatency, benchmarkReport, summarize } from '../src/core/stats.js';

const golden = (name) => JSON.parse(readFileSync(new URL(`../../tests/golden/${name}`, import.meta.url), 'utf8'));
const app = golden('app_cases.json');
const tol = app.tolerance;
const close = (a, b, t, what) => assert.ok(Math.abs(a - b) <= t, `${what}: ${a} vs ${b} (tolerance ${t})`);

function rgba() {
  const { width, height, rgb } = app.image;
  const out = new Uint8ClampedArray(width * height * 4);
  for (let p = 0; p < width * height; p++) {
    out.set(rgb.slice(3 * p, 3 * p + 3), 4 * p);
    out[4 * p + 3] = 255;
  }
  return out;
}

test('the vectors cover every input kind', () => {
  const kinds = new Set(app.cases.map((c) => parseContract(c.contract, c.name).input.dtype));
  assert.deepEqual([...kinds].sort(), ['float16', 'float32', 'int8', 'uint8']);
});

test('crop window from a box', () => {
  for (const c of app.cases) {
    const w = cropWindow(c.box, parseContract(c.contract, c.name).crop);
    [w.cx, w.cy, w.side].forEach((v, k) => close(v, c.expected_window[k], tol.window, `${c.name} window[${k}]`));
  }
});

test('input tensor from the image, per contract', () => {
  const frame = rgba();
  for (const c of app.cases) {
    const k = parseContract(c.contract, c.name);
    const crop = cropRGB(frame, app.image.width, app.image.height, cropWindow(c.box, k.crop), k.input.width,
      k.input.height, k.crop.border);
    if (k.input.dtype === 'float16') {
      assert.throws(() => encodeInput(crop, k.input), /float16/);
      continue;
    }
    const x = encodeInput(crop, k.input);
    assert.equal(x.length, c.expected_input.length, c.name);
    const t = k.input.dtype === 'float32' ? tol.input_float : tol.input_quantized;
    x.forEach((v, i) => close(v, c.expected_input[i], t, `${c.name} input[${i}]`));
  }
});

test('landmark tensor values to image points', () => {
  for (const c of app.cases) {
    const k = parseContract(c.contract, c.name);
    const pts = decodeLandmarks(c.raw_output, cropWindow(c.box, k.crop), k);
    c.expected_points.flat().forEach((v, i) => close(pts[i], v, tol.points, `${c.name} point[${i}]`));
  }
});

test('the export golden (mobile_two_stage) decodes to its expected points', () => {
  for (const c of app.export_golden.cases) {
    const k = parseContract(c.contract, c.mode);
    const pts = decodeLandmarks(c.raw_output, cropWindow(c.box, k.crop), k);
    c.expected_points.flat().forEach((v, i) => close(pts[i], v, tol.points, `${c.mode} point[${i}]`));
  }
});

test('percentiles match numpy', () => {
  const s = summarize(app.stats.samples_ms);
  for (const [key, v] of Object.entries(app.stats.expected)) close(s[key], v, tol.stats, key);
});

test('rint rounds half to even like numpy', () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6].map(rint), [0, 2, 2, 0, -2, 2, 3]);
});

test('one-euro filter matches the shared vectors', () => {
  const g = golden('one_euro.json');
  for (const c of g.cases) {
    const p = c.params;
    const f = new OneEuroFilter({ minCutoff: p.min_cutoff, beta: p.beta, dCutoff: p.d_cutoff });
    c.timestamps_s.forEach((t, i) => {
      const scale = Array.isArray(c.value_scale) ? c.value_scale[i] : c.value_scale;
      close(f.filter(t, c.inputs[i], scale), c.expected[i], g.tolerance, `${c.name}[${i}]`);
    });
  }
  assert.throws(() => new OneEuroFilter({ minCutoff: 0 }), /minCutoff > 0/);
});

test('landmark smoother: first frame passes, half-pixel jitter is damped', () => {
  const s = new LandmarkSmoother();
  const face = [40, 50, 60, 50, 50, 70];
  assert.deepEqual(Array.from(s.smooth(0, face)), face);
  const out = s.smooth(1 / 30, [40.5, 50, 60, 50, 50, 70]);
  assert.ok(Math.abs(out[0] - 40) < 0.5);
  assert.deepEqual(pointsBox(face), [40, 50, 20, 20]);
});

test('contract errors name the file and the field', () => {
  const c = structuredClone(app.cases[0].contract);
  assert.throws(() => parseContract({ ...c, format_version: '2.0' }, 'm.contract.json'),
    (e) => e instanceof ContractError && /m\.contract\.json: format_version is "2\.0"/.test(e.message));
  const bad = structuredClone(c);
  delete bad.input.std;
  assert.throws(() => parseContract(bad, 'm.contract.json'), /m\.contract\.json: input\.std is missing/);
  const shape = structuredClone(c);
  shape.outputs[0].shape = [1, 4, 2];
  assert.throws(() => parseContract(shape, 'x.json'), /x\.json: outputs\[0\]\.shape \[1,4,2\] must be/);
  const color = structuredClone(c);
  color.input.color = 'GRAY';
  assert.throws(() => parseContract(color, 'x.json'), /input\.color "GRAY" does not match input\.channels 3/);
});

test('rolling latency and the benchmark document', () => {
  const r = new RollingLatency(3);
  assert.equal(r.text(), 'no frames yet');
  [[1, 10, 0.1], [2, 20, 0.2], [3, 30, 0.3], [4, 40, 0.4]].forEach((v) => r.add(...v));
  assert.equal(r.text(), 'pre 3.0 · inference 30.0 · post 0.3 ms (p50 of 3)');
  const doc = benchmarkReport({
    device: { model: 'Chromium 156', os: 'Linux' }, model: { file: 'm.tflite', sha256: 'a'.repeat(64) },
    results: [{ delegate: 'xnnpack', threads: 1, initMs: 5, firstMs: 3, samples: [1, 2, 3, 4], warmupRuns: 2 }],
    failures: [{ delegate: 'gpu', error: 'no adapter' }], runtimeVersion: '2.5.3', created: '2026-11-21T07:00:00Z',
  });
  assert.equal(doc.results[0].p50_ms, 2.5);
  assert.equal(doc.results[0].runs, 4);
  assert.deepEqual(doc.skipped, [{ delegate: 'gpu', threads: null, error: 'no adapter' }]);
  assert.throws(() => benchmarkReport({ device: {}, model: { sha256: 'x' }, results: [], failures: [] }), /no configuration ran/);
});

test('an int8-I/O model is refused with the export advice, before LiteRT.js is touched', async () => {
  const c = app.cases.find((x) => x.contract.input.dtype === 'int8').contract;
  await assert.rejects(LandmarkEstimator.open(new Uint8Array(4), c, { names: { contract: 'm.contract.json' } }),
    /m\.contract\.json: input dtype int8 cannot run in LiteRT\.js .*--io-dtype uint8/);
});
