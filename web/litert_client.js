// Running a kfp-edge classifier in the browser with LiteRT.js (@litertjs/core, wasm + XNNPACK).
//
// A model entry is one element of /models/index.json (see app/serve_web.py): its url, the
// number of features, the input/output quantization [scale, zeroPoint] for uint8/int32
// models. Every LiteRT.js tensor is deleted as soon as it has been read.
import {Tensor, loadAndCompile, loadLiteRt} from '@litertjs/core';

const WASM_DIR = '/node_modules/@litertjs/core/wasm/';
let runtime = null;

/** Loads the LiteRT.js wasm runtime once (threaded when the page is cross-origin isolated). */
export function loadRuntime() {
  if (!runtime) {
    runtime = loadLiteRt(WASM_DIR, {threads: self.crossOriginIsolated === true});
  }
  return runtime;
}

/** Loads and compiles a model entry on the wasm CPU backend with one thread. */
export async function loadModel(entry) {
  await loadRuntime();
  const model = await loadAndCompile(entry.url, {accelerator: 'wasm', cpuOptions: {numThreads: 1}});
  const input = model.getInputDetails()[0];
  const output = model.getOutputDetails()[0];
  return {entry, model, input, output, numFeatures: Number(input.shape[1])};
}

const TYPED = {float32: Float32Array, int32: Int32Array, uint8: Uint8Array};
const LIMITS = {int32: [-2147483648, 2147483647], uint8: [0, 255]};

function toInput(loaded, row) {
  const {input, entry} = loaded;
  if (input.dtype === 'float32') return Float32Array.from(row);
  const [scale, zero] = entry.input_quantization;
  const [lo, hi] = LIMITS[input.dtype];
  const q = row.map((v) => Math.min(hi, Math.max(lo, Math.round(v / (scale || 1) + zero))));
  return TYPED[input.dtype].from(q);
}

function fromOutput(loaded, values) {
  if (loaded.output.dtype === 'float32') return Array.from(values);
  const [scale, zero] = loaded.entry.output_quantization;
  return Array.from(values, (v) => (v - zero) * scale);
}

/**
 * Runs one row; returns {probabilities, ms}: the class probabilities and the time of the call
 * (input tensor, run, reading the output, deleting the tensors).
 */
export async function predictRow(loaded, row) {
  if (row.length !== loaded.numFeatures) {
    throw new Error(`the model takes ${loaded.numFeatures} features, got ${row.length}`);
  }
  const data = toInput(loaded, row);
  const t0 = performance.now();
  const tensor = new Tensor(data, [1, loaded.numFeatures]);
  let outputs;
  try {
    outputs = await loaded.model.run(tensor);
  } finally {
    tensor.delete();
  }
  const values = outputs[0].toTypedArray().slice();
  for (const out of outputs) out.delete();
  const ms = performance.now() - t0;
  return {probabilities: fromOutput(loaded, values), ms};
}

/** Returns the p-th percentile (0-100) of numbers, linearly interpolated like numpy. */
export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  const pos = ((sorted.length - 1) * p) / 100;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/**
 * Runs fixed rows through a model and times single calls: `warmup` untimed calls, then `runs`
 * timed ones over the rows in turn. Returns the outputs of the rows and latency in µs.
 */
export async function measure(entry, rows, runs = 1000, warmup = 100) {
  const loaded = await loadModel(entry);
  try {
    const outputs = [];
    for (const row of rows) outputs.push((await predictRow(loaded, row)).probabilities);
    for (let i = 0; i < warmup; i++) await predictRow(loaded, rows[i % rows.length]);
    const us = [];
    for (let i = 0; i < runs; i++) us.push((await predictRow(loaded, rows[i % rows.length])).ms * 1000);
    const mean = us.reduce((a, b) => a + b, 0) / us.length;
    return {
      name: entry.name,
      outputs,
      latency_us: {p50: percentile(us, 50), p95: percentile(us, 95), p99: percentile(us, 99), mean, runs, warmup},
    };
  } finally {
    loaded.model.delete();
  }
}

/** Parses pasted CSV rows of numbers; a first line with no number in it is a header. */
export function parseCsv(text, numFeatures) {
  const rows = [];
  text.split(/\r?\n/).forEach((line, i) => {
    if (!line.trim()) return;
    const fields = line.split(',').map((f) => f.trim());
    const values = fields.map(Number);
    if (rows.length === 0 && i === 0 && values.every(Number.isNaN)) return;
    if (fields.length !== numFeatures) {
      throw new Error(`CSV line ${i + 1}: ${fields.length} fields, the model takes ${numFeatures}`);
    }
    const bad = values.findIndex((v, k) => fields[k] === '' || !Number.isFinite(v));
    if (bad >= 0) throw new Error(`CSV line ${i + 1}, field ${bad + 1}: ${JSON.stringify(fields[bad])} is not a number`);
    rows.push(values);
  });
  if (!rows.length) throw new Error('no CSV rows to predict');
  return rows;
}
