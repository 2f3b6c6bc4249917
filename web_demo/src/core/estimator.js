// A contract-driven landmark estimator on LiteRT.js: frame + face box → landmarks, with the stage times the page
// shows. Mirrors android_demo's LandmarkEstimator; only the tensor plumbing is LiteRT.js-specific.

import { loadAndCompile, Tensor } from '@litertjs/core';
import { parseContract } from './contract.js';
import { cropRGB, cropWindow, decodeLandmarks, encodeInput } from './geometry.js';

// LiteRT.js 2.5 tensors are float32, int32 or uint8 only (its DATATYPES table): an int8-IO export cannot be fed.
const WEB_DTYPES = ['float32', 'uint8'];

export class LandmarkEstimator {
  /** Use `LandmarkEstimator.open`; the constructor takes an already compiled model. */
  constructor(model, contract, accelerator, openMs) {
    Object.assign(this, { model, contract, accelerator, openMs });
  }

  /**
   * Compiles `modelBytes` (Uint8Array) with `contractJson` (object), checking that the contract matches the model.
   * `names` = {model, contract} are the file names quoted in errors.
   */
  static async open(modelBytes, contractJson, { accelerator = 'wasm', names = {} } = {}) {
    const contract = parseContract(contractJson, names.contract ?? 'contract');
    const modelName = names.model ?? 'model';
    for (const [what, dtype] of [['input', contract.input.dtype], ['landmark output', contract.landmarks.dtype]]) {
      if (!WEB_DTYPES.includes(dtype)) {
        throw new Error(`${contract.source}: ${what} dtype ${dtype} cannot run in LiteRT.js (float32 or uint8 ` +
          'tensors only); export float32, or int8 with --io-dtype uint8');
      }
    }
    const t0 = performance.now();
    let model;
    try {
      model = await loadAndCompile(modelBytes, { accelerator });
    } catch (e) {
      throw new Error(`${modelName}: LiteRT.js cannot load this model (${e.message ?? e})`);
    }
    const openMs = performance.now() - t0;
    const inp = model.getInputDetails()[contract.input.index];
    const { height, width, channels } = contract.input;
    const expect = [1, height, width, channels];
    if (!inp || Array.from(inp.shape).join(',') !== expect.join(',')) {
      model.delete();
      throw new Error(`${contract.source}: contract input [${expect}] does not match ${modelName}'s ` +
        `[${inp ? Array.from(inp.shape) : 'none'}]`);
    }
    if (inp.dtype !== contract.input.dtype) {
      model.delete();
      throw new Error(`${contract.source}: contract input dtype ${contract.input.dtype} but ${modelName} takes ${inp.dtype}`);
    }
    return new LandmarkEstimator(model, contract, accelerator, openMs);
  }

  /** One inference on an encoded input; returns the landmark tensor's values (a copy). */
  async invoke(inputArray) {
    const { height, width, channels } = this.contract.input;
    const tensor = new Tensor(inputArray, [1, height, width, channels]);
    let outputs;
    try {
      outputs = await this.model.run([tensor]);
    } finally {
      tensor.delete();
    }
    try {
      const out = outputs[this.contract.landmarks.index];
      const onCpu = out.accelerator === 'wasm' ? out : await out.copyTo('wasm');
      const values = Array.from(onCpu.toTypedArray());
      if (onCpu !== out) onCpu.delete();
      return values;
    } finally {
      outputs.forEach((t) => t.delete());
    }
  }

  /**
   * RGBA frame (ImageData) + contract face box → {points (image pixels), crop (uint8 RGB), raw, window, times}.
   */
  async estimate(frame, box) {
    const { input, crop } = this.contract;
    const t0 = performance.now();
    const window = cropWindow(box, crop);
    const rgb = cropRGB(frame.data, frame.width, frame.height, window, input.width, input.height, crop.border);
    const x = encodeInput(rgb, input);
    const t1 = performance.now();
    const raw = await this.invoke(x);
    const t2 = performance.now();
    const points = decodeLandmarks(raw, window, this.contract);
    const t3 = performance.now();
    return { points, crop: rgb, raw, window, box, times: { pre: t1 - t0, inference: t2 - t1, post: t3 - t2 } };
  }

  close() { this.model.delete(); }
}
