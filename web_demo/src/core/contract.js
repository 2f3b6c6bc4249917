// The model contract (schemas/contract.schema.json) as the page reads it. Mirrors android_demo/core Contract.kt:
// every field the page uses is checked, and an error names the file and the field.

export const SUPPORTED_MAJOR_VERSION = 1;

export const DTYPES = {
  float32: { bytes: 4, quantized: false },
  float16: { bytes: 2, quantized: false },
  int8: { bytes: 1, quantized: true, min: -128, max: 127 },
  uint8: { bytes: 1, quantized: true, min: 0, max: 255 },
};

export class ContractError extends Error {}

function field(obj, key, source, path) {
  if (obj === null || typeof obj !== 'object' || !(key in obj)) {
    throw new ContractError(`${source}: ${path}${key} is missing`);
  }
  return obj[key];
}

function num(obj, key, source, path, { positive = false, integer = false } = {}) {
  const v = field(obj, key, source, path);
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || (positive && v <= 0)) {
    const kind = `${positive ? 'a positive ' : 'a '}${integer ? 'integer' : 'number'}`;
    throw new ContractError(`${source}: ${path}${key} must be ${kind}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function oneOf(obj, key, allowed, source, path, fallback) {
  const v = obj && key in obj ? obj[key] : fallback;
  if (v === undefined) throw new ContractError(`${source}: ${path}${key} is missing`);
  if (!allowed.includes(v)) {
    throw new ContractError(`${source}: ${path}${key} is ${JSON.stringify(v)}; expected one of ${allowed.join(', ')}`);
  }
  return v;
}

/**
 * Parses and checks a contract object (already JSON-decoded). Returns a normalised view:
 * {scheme, input, crop, landmarks, raw}. `source` names the file in errors.
 */
export function parseContract(json, source = 'contract') {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new ContractError(`${source}: a contract must be a JSON object`);
  }
  const version = field(json, 'format_version', source, '');
  const m = typeof version === 'string' ? /^([0-9]+)\.[0-9]+$/.exec(version) : null;
  if (!m) throw new ContractError(`${source}: format_version is ${JSON.stringify(version)}; expected "major.minor"`);
  if (Number(m[1]) !== SUPPORTED_MAJOR_VERSION) {
    throw new ContractError(`${source}: format_version is "${version}"; this page reads ${SUPPORTED_MAJOR_VERSION}.x ` +
      '(update the page, or export with a matching tfalign)');
  }
  const s = field(json, 'scheme', source, '');
  const numPoints = num(s, 'num_points', source, 'scheme.', { positive: true, integer: true });
  const names = field(s, 'point_names', source, 'scheme.');
  if (!Array.isArray(names) || names.length !== numPoints) {
    throw new ContractError(`${source}: scheme.point_names has ${Array.isArray(names) ? names.length : 'no'} names ` +
      `for num_points ${numPoints}`);
  }
  const scheme = { name: String(field(s, 'name', source, 'scheme.')), numPoints, pointNames: names };

  const i = field(json, 'input', source, '');
  const channels = num(i, 'channels', source, 'input.', { integer: true });
  const color = oneOf(i, 'color', ['RGB', 'GRAY'], source, 'input.');
  if (![1, 3].includes(channels) || (color === 'GRAY') !== (channels === 1)) {
    throw new ContractError(`${source}: input.color "${color}" does not match input.channels ${channels} ` +
      '(RGB needs 3, GRAY needs 1)');
  }
  const dtype = oneOf(i, 'dtype', Object.keys(DTYPES), source, 'input.');
  const modelNormalizes = oneOf(i, 'normalization', ['client', 'model'], source, 'input.', 'client') === 'model';
  const quantize = DTYPES[dtype].quantized && !modelNormalizes;
  const input = {
    index: 'index' in i ? num(i, 'index', source, 'input.', { integer: true }) : 0,
    height: num(i, 'height', source, 'input.', { positive: true, integer: true }),
    width: num(i, 'width', source, 'input.', { positive: true, integer: true }),
    channels, gray: color === 'GRAY', dtype, modelNormalizes,
    mean: num(i, 'mean', source, 'input.'),
    std: num(i, 'std', source, 'input.', { positive: true }),
    scale: quantize ? num(i, 'scale', source, 'input.', { positive: true }) : 1,
    zeroPoint: quantize ? num(i, 'zero_point', source, 'input.', { integer: true }) : 0,
  };

  const c = field(json, 'crop', source, '');
  // Only the resampling and box tfalign trains with exist; a contract asking for others is refused.
  oneOf(c, 'interpolation', ['bilinear'], source, 'crop.', 'bilinear');
  oneOf(c, 'box', ['landmarks_tight'], source, 'crop.', 'landmarks_tight');
  const crop = {
    scale: num(c, 'scale', source, 'crop.', { positive: true }),
    shiftX: 'shift_x' in c ? num(c, 'shift_x', source, 'crop.') : 0,
    shiftY: 'shift_y' in c ? num(c, 'shift_y', source, 'crop.') : 0,
    border: 'border' in c ? num(c, 'border', source, 'crop.') : 0,
  };

  const outputs = field(json, 'outputs', source, '');
  const lms = Array.isArray(outputs) ? outputs.filter((o) => o && o.kind === 'landmarks') : [];
  if (lms.length !== 1) {
    throw new ContractError(`${source}: outputs must hold exactly one entry with kind "landmarks"; found ${lms.length}`);
  }
  const o = lms[0];
  const path = `outputs[${outputs.indexOf(o)}].`;
  oneOf(o, 'layout', ['xy_normalized'], source, path);
  const odtype = oneOf(o, 'dtype', ['float32', 'float16', 'int8', 'uint8'], source, path);
  const shape = field(o, 'shape', source, path);
  const elements = Array.isArray(shape) ? shape.reduce((a, b) => a * b, 1) : NaN;
  if (!Array.isArray(shape) || shape.length < 2 || shape[shape.length - 1] !== 2 ||
      shape[shape.length - 2] !== numPoints || elements !== 2 * numPoints) {
    throw new ContractError(`${source}: ${path}shape ${JSON.stringify(shape)} must be [1, num_points, 2] = ` +
      `[1, ${numPoints}, 2] for layout xy_normalized`);
  }
  const landmarks = {
    index: 'index' in o ? num(o, 'index', source, path, { integer: true }) : 0,
    shape, elements, dtype: odtype,
    origin: oneOf(o, 'origin', ['edge', 'center'], source, path),
    scale: DTYPES[odtype].quantized ? num(o, 'scale', source, path, { positive: true }) : 1,
    zeroPoint: DTYPES[odtype].quantized ? num(o, 'zero_point', source, path, { integer: true }) : 0,
  };
  return { source, scheme, input, crop, landmarks, raw: json };
}
