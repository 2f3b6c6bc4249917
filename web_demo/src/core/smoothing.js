// One-euro smoothing (Casiez, Roussel & Vogel, CHI 2012), the same math as tfalign/smoothing.py and the Android /
// iOS cores, checked against tests/golden/one_euro.json: the speed is taken against the previous *raw* value and
// scaled by value_scale = 1 / face size (MediaPipe), so one parameter set suits small and large faces.

export const DEFAULTS = Object.freeze({ minCutoff: 0.05, beta: 80.0, dCutoff: 1.0 });

function alpha(cutoff, dt) {
  const tau = 1.0 / (2.0 * Math.PI * cutoff);
  return 1.0 / (1.0 + tau / dt);
}

export class OneEuroFilter {
  constructor({ minCutoff = DEFAULTS.minCutoff, beta = DEFAULTS.beta, dCutoff = DEFAULTS.dCutoff } = {}) {
    if (![minCutoff, beta, dCutoff].every(Number.isFinite) || !(minCutoff > 0 && dCutoff > 0 && beta >= 0)) {
      throw new RangeError(`one-euro parameters must have minCutoff > 0, dCutoff > 0, beta >= 0; got ` +
        `minCutoff=${minCutoff}, beta=${beta}, dCutoff=${dCutoff}`);
    }
    Object.assign(this, { minCutoff, beta, dCutoff });
    this.reset();
  }

  reset() { this.initialized = false; }

  /** Filters x observed at t seconds; a timestamp that does not increase returns the last output unchanged. */
  filter(t, x, valueScale = 1.0) {
    if (!this.initialized) {
      this.initialized = true;
      this.tPrev = t; this.xPrevRaw = x; this.xHat = x; this.dxHat = 0;
      return x;
    }
    const dt = t - this.tPrev;
    if (dt <= 0) return this.xHat;
    const dx = (x - this.xPrevRaw) * valueScale / dt;
    this.dxHat += alpha(this.dCutoff, dt) * (dx - this.dxHat);
    const cutoff = this.minCutoff + this.beta * Math.abs(this.dxHat);
    this.xHat += alpha(cutoff, dt) * (x - this.xHat);
    this.tPrev = t; this.xPrevRaw = x;
    return this.xHat;
  }
}

/** MediaPipe's object scale: the mean of the width and height of the points' box. */
export function objectScale(points) {
  if (points.length < 2) return 0;
  let x0 = Infinity; let y0 = Infinity; let x1 = -Infinity; let y1 = -Infinity;
  for (let k = 0; k < points.length; k += 2) {
    x0 = Math.min(x0, points[k]); x1 = Math.max(x1, points[k]);
    y0 = Math.min(y0, points[k + 1]); y1 = Math.max(y1, points[k + 1]);
  }
  return 0.5 * ((x1 - x0) + (y1 - y0));
}

/** One filter per coordinate of [x0, y0, x1, y1, ...]; reset() when the face is lost. */
export class LandmarkSmoother {
  constructor(params = {}) { this.params = params; this.filters = []; }

  reset() { this.filters.forEach((f) => f.reset()); }

  smooth(t, points) {
    if (this.filters.length !== points.length) {
      this.filters = Array.from(points, () => new OneEuroFilter(this.params));
    }
    const scale = objectScale(points);
    const valueScale = scale > 0 ? 1 / scale : 1;
    return Float64Array.from(points, (v, k) => this.filters[k].filter(t, v, valueScale));
  }
}
