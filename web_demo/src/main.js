// The page: loads a model + contract, takes frames from the camera, an image or a video, finds the face, runs the
// estimator, draws smoothed landmarks and stage times, and runs the benchmark. Everything model-specific comes from
// the contract (src/core/contract.js); the math is in src/core/ and shared with the Node tests.
//
// Face finding: no detector ships offline on npm for the web (MediaPipe tasks-vision's face detector needs a model
// file that is not in its npm package), so the page does what `python -m tfalign.predict` does (tfalign/detect.py):
// a detector box typed in the UI or given as ?box=x,y,w,h (used as is), else the whole frame mapped with the
// PORTRAIT calibration (one portrait-framed face); then it re-crops on the tight box of its own landmarks — once more
// for a still image, and from frame to frame for video (tracking).
//
// URL parameters (all optional): model=URL of a .tflite (its contract is URL with .contract.json; default: the first
// model in models/index.json), image=URL, camera=1, box=x,y,w,h, refine=N (extra passes on a still image),
// accelerator=wasm|webgpu, smooth=0, track=0.

import { loadLiteRt } from '@litertjs/core';
import { LandmarkEstimator } from './core/estimator.js';
import { IDENTITY, PORTRAIT, applyCalibration, checkBox, encodeInput, pointsBox } from './core/geometry.js';
import { LandmarkSmoother } from './core/smoothing.js';
import { RollingLatency, benchmarkReport, measure, sha256Hex } from './core/stats.js';

const RUNTIME_VERSION = '2.5.3'; // @litertjs/core, pinned in package.json
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const view = $('view');
const ctx = view.getContext('2d');
const grab = document.createElement('canvas').getContext('2d', { willReadFrequently: true });

const state = {
  estimator: null, modelBytes: null, modelName: '', contractName: '',
  smoother: new LandmarkSmoother(), latency: new RollingLatency(60), trackBox: null,
  source: null, loopId: 0, busy: false, frames: 0, trackedFrames: 0, last: null, error: null,
};

function setStatus(text, error = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
  if (error) {
    state.error = text;
    document.body.dataset.state = 'error';
  }
}

function fail(e) {
  console.error(e);
  setStatus(String(e.message ?? e), true);
}

/** Detector box from the UI (x,y,w,h, used as is), or the PORTRAIT mapping of the whole frame. */
function detectorBox(width, height) {
  const text = $('box').value.trim();
  if (!text) return applyCalibration([0, 0, width, height], PORTRAIT);
  const box = text.split(',').map(Number);
  return applyCalibration(checkBox(box, `box "${text}"`), IDENTITY);
}

/** Extra passes on a still image: ?refine=N, else 1 on the portrait framing and 0 on a given box. */
function refinePasses() {
  const text = params.get('refine');
  if (text === null) return $('box').value.trim() ? 0 : 1;
  if (!/^[0-9]+$/.test(text)) throw new RangeError(`refine: expected a whole number >= 0, got "${text}"`);
  return Number(text);
}

/** A tracked box is kept while it is a plausible face inside the frame; otherwise the detector takes over. */
function plausible(box, width, height) {
  const [x, y, w, h] = box;
  const cx = x + w / 2; const cy = y + h / 2;
  return w >= 4 && h >= 4 && cx >= 0 && cy >= 0 && cx < width && cy < height && Math.max(w, h) < 4 * Math.max(width, height);
}

function grabFrame(source, width, height) {
  grab.canvas.width = width;
  grab.canvas.height = height;
  grab.drawImage(source, 0, 0, width, height);
  return grab.getImageData(0, 0, width, height);
}

function draw(source, frame, result, points) {
  view.width = frame.width;
  view.height = frame.height;
  ctx.drawImage(source, 0, 0, frame.width, frame.height);
  const { cx, cy, side } = result.window;
  ctx.strokeStyle = 'rgba(255, 200, 0, 0.8)';
  ctx.lineWidth = Math.max(1, frame.width / 400);
  ctx.strokeRect(cx - side / 2, cy - side / 2, side, side);
  const r = Math.max(1.5, Math.min(frame.width, frame.height) / 200);
  ctx.fillStyle = '#00ff40';
  for (let k = 0; k < points.length; k += 2) {
    ctx.beginPath();
    ctx.arc(points[k], points[k + 1], r, 0, 2 * Math.PI);
    ctx.fill();
  }
}

function toBase64(bytes) {
  let s = '';
  for (let k = 0; k < bytes.length; k += 0x8000) s += String.fromCharCode(...bytes.subarray(k, k + 0x8000));
  return btoa(s);
}

/** Runs one frame; `still` = a single image (extra refinement passes, no smoothing). */
async function processFrame(source, width, height, tSeconds, still) {
  const est = state.estimator;
  if (!est) throw new Error('no model loaded: choose a .tflite and its contract');
  const frame = grabFrame(source, width, height);
  const track = $('track').checked;
  const tracking = !still && track && state.trackBox !== null;
  let box = tracking ? state.trackBox : detectorBox(width, height);
  let boxSource = tracking ? 'tracking' : 'detector';
  let result = await est.estimate(frame, box);
  const refine = still ? refinePasses() : 0;
  for (let k = 0; k < refine; k++) {
    box = pointsBox(result.points);
    if (!plausible(box, width, height)) break;
    result = await est.estimate(frame, box);
    boxSource = 'refined';
  }
  const next = pointsBox(result.points);
  if (track && plausible(next, width, height)) {
    state.trackBox = next;
  } else {
    state.trackBox = null;
    state.smoother.reset();
  }
  const t0 = performance.now();
  const shown = still || !$('smooth').checked ? result.points : state.smoother.smooth(tSeconds, result.points);
  result.times.post += performance.now() - t0;
  draw(source, frame, result, shown);
  state.latency.add(result.times.pre, result.times.inference, result.times.post);
  $('times').textContent = `${state.latency.text()} · box: ${boxSource}`;
  state.frames += 1;
  if (tracking) state.trackedFrames += 1;
  state.last = {
    frameIndex: state.frames, still, t: tSeconds, frame: { width, height }, box: result.box, boxSource,
    window: result.window, cropBytes: result.crop, raw: result.raw,
    points: Array.from(result.points), shown: Array.from(shown), times: result.times,
  };
  document.body.dataset.state = 'running';
  return state.last;
}

async function loadModel(modelBytes, contractJson, names) {
  state.estimator?.close();
  state.estimator = null;
  const accelerator = $('accelerator').value;
  state.estimator = await LandmarkEstimator.open(modelBytes, contractJson, { accelerator, names });
  Object.assign(state, { modelBytes, modelName: names.model, contractName: names.contract, trackBox: null });
  state.smoother.reset();
  const c = state.estimator.contract;
  $('model-info').textContent = `${names.model}: ${c.scheme.name} (${c.scheme.numPoints} points), ` +
    `${c.input.width}×${c.input.height} ${c.input.dtype}, ${accelerator}, opened in ${state.estimator.openMs.toFixed(0)} ms`;
}

async function fetchOk(url, what) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: ${what} not found (HTTP ${r.status}); see web_demo/README.md, "Models"`);
  return r;
}

async function loadModelFromUrl(url) {
  const contractUrl = url.replace(/\.tflite$/, '') + '.contract.json';
  const bytes = new Uint8Array(await (await fetchOk(url, 'model')).arrayBuffer());
  let contract;
  try {
    contract = await (await fetchOk(contractUrl, 'contract')).json();
  } catch (e) {
    throw e instanceof SyntaxError ? new Error(`${contractUrl}: not valid JSON (${e.message})`) : e;
  }
  await loadModel(bytes, contract, { model: url.split('/').pop(), contract: contractUrl.split('/').pop() });
}

async function defaultModelUrl() {
  const r = await fetch('models/index.json');
  if (!r.ok) return null;
  const index = await r.json();
  return index.models?.length ? `models/${index.models[0]}` : null;
}

function stopSource() {
  state.loopId += 1;
  const v = $('video');
  if (v.srcObject) v.srcObject.getTracks().forEach((t) => t.stop());
  v.srcObject = null;
  v.pause();
  state.source = null;
  state.trackBox = null;
  state.smoother.reset();
}

async function runImage(url) {
  stopSource();
  const img = new Image();
  img.src = url;
  try {
    await img.decode();
  } catch {
    throw new Error(`${url}: cannot decode this image`);
  }
  state.source = 'image';
  return processFrame(img, img.naturalWidth, img.naturalHeight, 0, true);
}

/** Processes video frames as they come (skipping frames while the model is busy). */
function runVideoLoop(video) {
  const id = ++state.loopId;
  const onFrame = async (now, meta) => {
    if (id !== state.loopId) return;
    if (!state.busy && video.videoWidth) {
      state.busy = true;
      try {
        const t = meta?.mediaTime ?? video.currentTime ?? now / 1000;
        await processFrame(video, video.videoWidth, video.videoHeight, state.source === 'camera' ? now / 1000 : t, false);
      } catch (e) {
        fail(e);
        state.loopId += 1;
        return;
      } finally {
        state.busy = false;
      }
    }
    if ('requestVideoFrameCallback' in video) video.requestVideoFrameCallback(onFrame);
    else requestAnimationFrame((t) => onFrame(t));
  };
  if ('requestVideoFrameCallback' in video) video.requestVideoFrameCallback(onFrame);
  else requestAnimationFrame((t) => onFrame(t));
}

async function startCamera() {
  stopSource();
  if (!navigator.mediaDevices?.getUserMedia) throw new Error('camera: this browser has no getUserMedia (use https or localhost)');
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (e) {
    throw new Error(`camera: ${e.name ?? 'error'}: ${e.message ?? e} (allow the camera, or choose an image/video)`);
  }
  const v = $('video');
  v.srcObject = stream;
  await v.play();
  state.source = 'camera';
  runVideoLoop(v);
}

async function runVideoFile(url) {
  stopSource();
  const v = $('video');
  v.src = url;
  v.loop = true;
  await v.play();
  state.source = 'video';
  runVideoLoop(v);
}

async function benchmark({ warmupRuns = Number($('warmup').value), runs = Number($('runs').value), download = true } = {}) {
  if (!state.estimator) throw new Error('benchmark: load a model first');
  const { contract } = state.estimator;
  const { input } = contract;
  // Fixed input: the last crop when there is one, else mid-grey; the benchmark times the invoke only.
  const crop = state.last?.cropBytes ?? new Uint8Array(input.width * input.height * 3).fill(128);
  const x = encodeInput(crop, input);
  const configs = [['wasm', 'xnnpack', 1]];
  if (navigator.gpu) configs.push(['webgpu', 'gpu', null]);
  const results = []; const failures = [];
  for (const [accelerator, delegate, threads] of configs) {
    $('bench-info').textContent = `${delegate}: opening…`;
    try {
      const est = await LandmarkEstimator.open(state.modelBytes, contract.raw, { accelerator, names: { model: state.modelName, contract: state.contractName } });
      try {
        const m = await measure(() => est.invoke(x), {
          warmupRuns, runs, onProgress: (k, n) => { if (k % 10 === 0) $('bench-info').textContent = `${delegate}: ${k}/${n}`; },
        });
        results.push({ delegate, threads, initMs: est.openMs, ...m });
      } finally {
        est.close();
      }
    } catch (e) {
      failures.push({ delegate, threads, error: String(e.message ?? e) });
    }
  }
  const ua = navigator.userAgentData;
  const doc = benchmarkReport({
    device: { model: ua?.brands?.map((b) => `${b.brand} ${b.version}`).join(', ') || navigator.userAgent,
      os: ua?.platform || navigator.platform || 'unknown', cpuCores: navigator.hardwareConcurrency },
    model: { file: state.modelName, sha256: await sha256Hex(state.modelBytes), sizeBytes: state.modelBytes.length,
      contract: state.contractName },
    results, failures, runtimeVersion: RUNTIME_VERSION,
  });
  const r0 = doc.results[0];
  $('bench-info').textContent = `${r0.delegate}: p50 ${r0.p50_ms.toFixed(2)} ms, p90 ${r0.p90_ms.toFixed(2)} ms ` +
    `(${r0.runs} runs)`;
  if (download) {
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([JSON.stringify(doc, null, 1)], { type: 'application/json' }));
    a.download = `benchmark_${state.modelName.replace(/\.tflite$/, '')}_web.json`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }
  return doc;
}

const guard = (fn) => (...args) => fn(...args).catch(fail);

$('camera-btn').onclick = guard(startCamera);
$('stop-btn').onclick = () => stopSource();
$('reset-btn').onclick = () => { state.trackBox = null; state.smoother.reset(); };
$('bench-btn').onclick = guard(() => benchmark());
$('accelerator').onchange = guard(async () => {
  if (state.modelBytes) await loadModel(state.modelBytes, state.estimator.contract.raw, { model: state.modelName, contract: state.contractName });
});
$('media-file').onchange = guard(async (ev) => {
  const f = ev.target.files[0];
  if (!f) return;
  const url = URL.createObjectURL(f);
  if (f.type.startsWith('video/')) await runVideoFile(url);
  else await runImage(url);
});
const onModelFiles = guard(async () => {
  const m = $('model-file').files[0]; const c = $('contract-file').files[0];
  if (!m || !c) { setStatus('choose both the .tflite and its .contract.json'); return; }
  let contract;
  try {
    contract = JSON.parse(await c.text());
  } catch (e) {
    throw new Error(`${c.name}: not valid JSON (${e.message})`);
  }
  await loadModel(new Uint8Array(await m.arrayBuffer()), contract, { model: m.name, contract: c.name });
  setStatus('ready');
});
$('model-file').onchange = onModelFiles;
$('contract-file').onchange = onModelFiles;

// The hook the end-to-end test (tests/test_web_demo.py) drives; handy from the console too.
window.tfalignDemo = {
  get state() { return document.body.dataset.state; },
  get error() { return state.error; },
  // The crop as base64 (uint8 RGB, row-major), encoded only when asked: the page itself never needs it.
  get last() {
    if (!state.last) return null;
    const { cropBytes, ...rest } = state.last;
    return { ...rest, crop: toBase64(cropBytes) };
  },
  get frames() { return state.frames; },
  get trackedFrames() { return state.trackedFrames; },
  runImage, startCamera, benchmark, stop: stopSource,
};

async function init() {
  const acc = params.get('accelerator');
  if (acc !== null && !['wasm', 'webgpu'].includes(acc)) throw new RangeError(`accelerator: expected wasm or webgpu, got "${acc}"`);
  if (acc) $('accelerator').value = acc;
  if (params.get('box')) $('box').value = params.get('box');
  if (params.get('smooth') === '0') $('smooth').checked = false;
  if (params.get('track') === '0') $('track').checked = false;
  // Served from this build (scripts/copy_wasm.mjs copies them), never from a CDN.
  await loadLiteRt(new URL('litert/', document.baseURI).href);
  const url = params.get('model') ?? await defaultModelUrl();
  if (url) {
    await loadModelFromUrl(url);
    setStatus('ready');
  } else {
    setStatus('no model in models/ (web_demo/scripts/copy_model.sh): choose a .tflite and its contract');
  }
  document.body.dataset.state = 'ready';
  if (params.get('image')) await runImage(params.get('image'));
  else if (params.get('camera') === '1') await startCamera();
}


window.tfalignDemo.ready = init().catch(fail);
