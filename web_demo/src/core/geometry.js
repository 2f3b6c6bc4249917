// Crop math of the contract, the same as tfalign/data/geometry.py and android_demo/core (Geometry.kt,
// Preprocess.kt, Decode.kt). Pixel coordinates are 0-based with pixel centres at integers; a normalised crop
// coordinate with origin "edge" is u = (x_crop + 0.5) / W.

import { DTYPES } from './contract.js';

/** Round half to even, as NumPy's np.round and Kotlin's Math.rint do (Math.round rounds half up). */
export function rint(v) {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

export function checkBox(box, what = 'box') {
  const ok = Array.isArray(box) && box.length === 4 && box.every((v) => typeof v === 'number' && Number.isFinite(v));
  if (!ok || !(box[2] > 0 && box[3] > 0)) {
    throw new RangeError(`${what}: expected x,y,w,h with w > 0 and h > 0, got ${JSON.stringify(box)}`);
  }
  return box;
}

/**
 * tfalign.detect.BoxCalibration: a detector box (x, y, w, h) → the contract's box (the tight box of the scheme's
 * points) as (x + dx*w, y + dy*h, sw*w, sh*h).
 */
export function applyCalibration(box, cal) {
  const [x, y, w, h] = checkBox(box);
  return [x + cal.dx * w, y + cal.dy * h, cal.sw * w, cal.sh * h];
}

/** tfalign.detect.IDENTITY: a box given by the user is used as it is. */
export const IDENTITY = { dx: 0, dy: 0, sw: 1, sh: 1 };
/**
 * tfalign.detect.PORTRAIT: the whole frame → the tight 68-point box of a portrait-framed face, fitted on LFPW
 * #train (`python bench/detect_calibration.py`). Keep in step with tfalign/detect.py.
 */
export const PORTRAIT = { dx: 0.2514, dy: 0.2556, sw: 0.4984, sh: 0.4975 };

/** Tight (x, y, w, h) box of points [x0, y0, x1, y1, ...]: the contract's box for the next frame (tracking). */
export function pointsBox(points) {
  let x0 = Infinity; let y0 = Infinity; let x1 = -Infinity; let y1 = -Infinity;
  for (let k = 0; k < points.length; k += 2) {
    x0 = Math.min(x0, points[k]); x1 = Math.max(x1, points[k]);
    y0 = Math.min(y0, points[k + 1]); y1 = Math.max(y1, points[k + 1]);
  }
  return [x0, y0, x1 - x0, y1 - y0];
}

/** The square crop {cx, cy, side} of a face box: side = scale*max(w, h), centre = box centre + shift*side. */
export function cropWindow(box, crop) {
  const [x, y, w, h] = checkBox(box);
  const side = crop.scale * Math.max(w, h);
  return { cx: x + w / 2 + crop.shiftX * side, cy: y + h / 2 + crop.shiftY * side, side };
}

/** Image x of the centre of crop column j in an output `width` pixels wide. */
export function sourceX(win, j, width) { return win.cx + (j + 0.5 - 0.5 * width) * win.side / width; }
export function sourceY(win, i, height) { return win.cy + (i + 0.5 - 0.5 * height) * win.side / height; }

/**
 * Resamples the window of an RGBA frame (ImageData.data layout) to a uint8 RGB crop [h*w*3]: exact bilinear
 * weights, `border` outside the frame, rounded half to even (OpenCV's fixed-point warpAffine, which the Python
 * reference uses, can differ by one level on a few pixels).
 */
export function cropRGB(rgba, frameW, frameH, win, outW, outH, border = 0) {
  const out = new Uint8Array(outW * outH * 3);
  const acc = [0, 0, 0];
  const add = (ix, iy, wgt) => {
    if (wgt === 0) return;
    if (ix < 0 || iy < 0 || ix >= frameW || iy >= frameH) {
      acc[0] += wgt * border; acc[1] += wgt * border; acc[2] += wgt * border;
      return;
    }
    const p = 4 * (iy * frameW + ix);
    acc[0] += wgt * rgba[p]; acc[1] += wgt * rgba[p + 1]; acc[2] += wgt * rgba[p + 2];
  };
  for (let i = 0; i < outH; i++) {
    const y = sourceY(win, i, outH);
    const y0 = Math.floor(y); const fy = y - y0;
    for (let j = 0; j < outW; j++) {
      const x = sourceX(win, j, outW);
      const x0 = Math.floor(x); const fx = x - x0;
      acc[0] = acc[1] = acc[2] = 0;
      add(x0, y0, (1 - fx) * (1 - fy));
      add(x0 + 1, y0, fx * (1 - fy));
      add(x0, y0 + 1, (1 - fx) * fy);
      add(x0 + 1, y0 + 1, fx * fy);
      const o = 3 * (i * outW + j);
      for (let c = 0; c < 3; c++) out[o + c] = Math.min(255, Math.max(0, rint(acc[c])));
    }
  }
  return out;
}

/**
 * uint8 RGB crop → the model's input typed array: GRAY = rounded BT.601 luma; x = (pixel - mean) / std in float32
 * (NumPy's order: float32(1/std) from a double division); integer inputs q = rint(x / scale) + zero_point, clamped.
 */
export function encodeInput(rgb, input) {
  const n = input.height * input.width;
  const { dtype } = input;
  const info = DTYPES[dtype];
  if (dtype === 'float16') {
    throw new RangeError('input.dtype float16: LiteRT.js has no float16 tensors; export with float32 inputs');
  }
  const out = dtype === 'float32' ? new Float32Array(n * input.channels)
    : dtype === 'int8' ? new Int8Array(n * input.channels) : new Uint8Array(n * input.channels);
  const mean = Math.fround(input.mean);
  const invStd = Math.fround(1 / input.std);
  const scale = Math.fround(input.scale);
  let k = 0;
  const put = (pixel) => {
    if (input.modelNormalizes) { out[k++] = pixel; return; }
    const x = Math.fround(Math.fround(pixel - mean) * invStd);
    if (!info.quantized) { out[k++] = x; return; }
    const q = rint(Math.fround(x / scale)) + input.zeroPoint;
    out[k++] = Math.min(info.max, Math.max(info.min, q));
  };
  for (let p = 0; p < n; p++) {
    const r = rgb[3 * p]; const g = rgb[3 * p + 1]; const b = rgb[3 * p + 2];
    if (input.gray) put(rint(0.299 * r + 0.587 * g + 0.114 * b));
    else { put(r); put(g); put(b); }
  }
  return out;
}

/**
 * Landmark tensor values (floats, or the stored integers of a quantized tensor) → image pixel points
 * [x0, y0, x1, y1, ...] through the crop window.
 */
export function decodeLandmarks(raw, win, contract) {
  const lm = contract.landmarks;
  const { width, height } = contract.input;
  if (raw.length !== lm.elements) {
    throw new RangeError(`landmark tensor has ${raw.length} values, the contract says ${lm.elements}`);
  }
  const deq = DTYPES[lm.dtype].quantized ? (q) => (q - lm.zeroPoint) * lm.scale : (q) => q;
  const center = lm.origin === 'center';
  const out = new Float64Array(raw.length);
  for (let p = 0; p < raw.length / 2; p++) {
    const u = deq(raw[2 * p]) + (center ? 0.5 / width : 0);
    const v = deq(raw[2 * p + 1]) + (center ? 0.5 / height : 0);
    out[2 * p] = win.cx + (u - 0.5) * win.side;
    out[2 * p + 1] = win.cy + (v - 0.5) * win.side;
  }
  return out;
}
