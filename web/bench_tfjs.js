// The same network in TF.js (tfjs-core ops on the wasm backend, one thread), for
// benchmarks/bench_browser.py: TF.js's Python converter does not install next to TensorFlow
// 2.21, so the benchmark hands over the Keras weights as JSON (job.network) instead.
//
// job.network: [{"op": "normalize", "mean": [...], "variance": [...]},
//               {"op": "dense", "kernel": [[...]], "bias": [...], "activation": "relu"}, ...]
import {percentile} from './litert_client.js';

const TFJS = '/node_modules/@tensorflow/';
let loaded = null;

function script(src) {
  return new Promise((resolve, reject) => {
    const node = Object.assign(document.createElement('script'), {src, onload: resolve});
    node.onerror = () => reject(new Error(`cannot load ${src}`));
    document.head.append(node);
  });
}

async function loadTfjs() {
  if (!loaded) {
    loaded = (async () => {
      await script(`${TFJS}tfjs-core/dist/tf-core.min.js`);
      await script(`${TFJS}tfjs-backend-wasm/dist/tf-backend-wasm.min.js`);
      const tf = self.tf;
      tf.wasm.setWasmPaths(`${TFJS}tfjs-backend-wasm/dist/`);
      tf.wasm.setThreadsCount(1);
      await tf.setBackend('wasm');
      await tf.ready();
      return tf;
    })();
  }
  return loaded;
}

function build(tf, network) {
  const steps = network.map((layer) => {
    if (layer.op === 'normalize') {
      const mean = tf.tensor1d(layer.mean);
      const scale = tf.tensor1d(layer.variance.map((v) => 1 / Math.sqrt(Math.max(v, 1e-12))));
      return (x) => tf.mul(tf.sub(x, mean), scale);
    }
    const kernel = tf.tensor2d(layer.kernel);
    const bias = tf.tensor1d(layer.bias);
    const activation = {relu: tf.relu, softmax: (x) => tf.softmax(x), sigmoid: tf.sigmoid, linear: (x) => x};
    const act = activation[layer.activation];
    if (!act) throw new Error(`activation ${layer.activation} is not supported here`);
    return (x) => act(tf.add(tf.matMul(x, kernel), bias));
  });
  return (x) => steps.reduce((h, step) => step(h), x);
}

/** Runs fixed rows through the network in TF.js and times single calls (like litert_client). */
export async function measure(entry, rows, runs = 1000, warmup = 100, job = {}) {
  const tf = await loadTfjs();
  const forward = build(tf, job.network);
  const call = (row) => {
    const t0 = performance.now();
    const out = tf.tidy(() => forward(tf.tensor2d([row], [1, row.length])));
    const values = out.dataSync().slice();
    out.dispose();
    return {values: Array.from(values), ms: performance.now() - t0};
  };
  const outputs = rows.map((row) => call(row).values);
  for (let i = 0; i < warmup; i++) call(rows[i % rows.length]);
  const us = [];
  for (let i = 0; i < runs; i++) us.push(call(rows[i % rows.length]).ms * 1000);
  const mean = us.reduce((a, b) => a + b, 0) / us.length;
  return {
    name: `tfjs ${tf.getBackend()} (${entry.name} weights)`,
    outputs,
    latency_us: {p50: percentile(us, 50), p95: percentile(us, 95), p99: percentile(us, 99), mean, runs, warmup},
  };
}
