// Latency statistics and the benchmark JSON of schemas/benchmark.schema.json (what `python -m tfalign.profile
// --import` reads), mirroring android_demo/core Stats.kt and Benchmark.kt.

/** numpy.percentile(samples, q) with the default linear interpolation; `sorted` ascending, q in [0, 100]. */
export function percentile(sorted, q) {
  if (!sorted.length) throw new RangeError('no latency samples');
  if (!(q >= 0 && q <= 100)) throw new RangeError(`percentile must be in [0, 100], got ${q}`);
  const rank = (q / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (rank - lo) * (sorted[hi] - sorted[lo]);
}

export function summarize(samplesMs) {
  if (!samplesMs.length) throw new RangeError('no latency samples to summarise');
  const s = Float64Array.from(samplesMs).sort();
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return {
    count: s.length, mean_ms: mean, min_ms: s[0], max_ms: s[s.length - 1],
    p50_ms: percentile(s, 50), p90_ms: percentile(s, 90), p95_ms: percentile(s, 95), p99_ms: percentile(s, 99),
  };
}

export const STAGES = ['pre', 'inference', 'post'];

/** Per-stage latency of the last `capacity` frames, for the live readout. */
export class RollingLatency {
  constructor(capacity = 60) {
    if (!(Number.isInteger(capacity) && capacity >= 1)) throw new RangeError(`capacity must be >= 1, got ${capacity}`);
    this.capacity = capacity;
    this.samples = STAGES.map(() => new Float64Array(capacity));
    this.next = 0;
    this.size = 0;
  }

  add(preMs, inferenceMs, postMs) {
    [preMs, inferenceMs, postMs].forEach((v, k) => { this.samples[k][this.next] = v; });
    this.next = (this.next + 1) % this.capacity;
    this.size = Math.min(this.size + 1, this.capacity);
  }

  summary(stage) {
    const k = STAGES.indexOf(stage);
    if (k < 0) throw new RangeError(`stage must be one of ${STAGES.join(', ')}, got ${stage}`);
    return this.size ? summarize(this.samples[k].subarray(0, this.size)) : null;
  }

  /** e.g. `pre 1.2 · inference 4.8 · post 0.1 ms (p50 of 60)` */
  text() {
    if (!this.size) return 'no frames yet';
    return `${STAGES.map((s) => `${s} ${this.summary(s).p50_ms.toFixed(1)}`).join(' · ')} ms (p50 of ${this.size})`;
  }
}

export const DELEGATES = ['cpu', 'xnnpack', 'gpu', 'nnapi', 'npu', 'coreml', 'hexagon', 'qnn', 'other'];

/**
 * Times `invoke` (an async function running the model once on fixed input, no pre/post-processing): one first
 * run, `warmupRuns` untimed, then `runs` timed. `openMs` is how long opening the model took (init_ms).
 */
export async function measure(invoke, { warmupRuns = 10, runs = 100, now = () => performance.now(),
  onProgress = () => {} } = {}) {
  if (!(Number.isInteger(warmupRuns) && warmupRuns >= 0)) throw new RangeError(`warmup runs must be >= 0, got ${warmupRuns}`);
  if (!(Number.isInteger(runs) && runs >= 1)) throw new RangeError(`runs must be >= 1, got ${runs}`);
  let t0 = now();
  await invoke();
  const firstMs = now() - t0;
  for (let k = 0; k < warmupRuns; k++) await invoke();
  const samples = new Float64Array(runs);
  for (let k = 0; k < runs; k++) {
    t0 = now();
    await invoke();
    samples[k] = now() - t0;
    onProgress(k + 1, runs);
  }
  return { firstMs, samples, warmupRuns };
}

/** The benchmark document; `results` are {delegate, threads, initMs, firstMs, samples, warmupRuns}. */
export function benchmarkReport({ device, model, results, failures = [], runtime = 'litert.js', runtimeVersion,
  tool = { name: 'tfalign-web', version: '0.1.0' }, created = new Date().toISOString().replace(/\.\d+Z$/, 'Z') }) {
  if (!results.length) {
    throw new Error(`no configuration ran; failures: ${failures.map((f) => `${f.delegate}: ${f.error}`).join('; ')}`);
  }
  if (!/^[0-9a-f]{64}$/.test(model.sha256)) throw new RangeError(`model sha256 must be 64 hex digits, got ${model.sha256}`);
  const doc = {
    format_version: 1, created, tool,
    device: { model: device.model, soc: device.soc ?? '', os: device.os },
    model: { file: model.file, sha256: model.sha256 },
    results: results.map((r) => {
      if (!DELEGATES.includes(r.delegate)) throw new RangeError(`delegate "${r.delegate}" is not one of ${DELEGATES.join(', ')}`);
      const s = summarize(r.samples);
      const entry = { runtime, delegate: r.delegate, threads: r.threads ?? null, warmup_runs: r.warmupRuns,
        runs: s.count, init_ms: r.initMs, first_ms: r.firstMs };
      if (runtimeVersion) entry.runtime_version = runtimeVersion;
      for (const k of ['p50_ms', 'p90_ms', 'p95_ms', 'p99_ms', 'mean_ms', 'min_ms', 'max_ms']) entry[k] = s[k];
      return entry;
    }),
  };
  if (device.manufacturer) doc.device.manufacturer = device.manufacturer;
  if (device.cpuCores) doc.device.cpu_cores = device.cpuCores;
  if (model.sizeBytes !== undefined) doc.model.size_bytes = model.sizeBytes;
  if (model.contract) doc.model.contract = model.contract;
  if (failures.length) doc.skipped = failures.map((f) => ({ delegate: f.delegate, threads: f.threads ?? null, error: f.error }));
  return doc;
}

export async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}
