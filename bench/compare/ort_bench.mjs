#!/usr/bin/env node
// ONNX Runtime (onnxruntime-node, CPU execution provider) latency of a ViT exported by
// export_onnx.py, on the pixel values of a reference.safetensors written by
// tests/reference/make_vit_reference.py.
//
//   ORT_NODE_PREFIX=DIR node bench/compare/ort_bench.mjs MODEL.onnx REFERENCE.safetensors [--runs N]
//
// DIR is where `npm install --prefix DIR onnxruntime-node` put node_modules/ (default: the current
// directory).  Session: intraOpNumThreads 2, interOpNumThreads 1, graphOptimizationLevel 'all'.
// Batch 1 (reference image 0) and batch 8 (the reference images repeated), each: 3 warm-up runs,
// then N timed runs of session.run(); prints the median ms per batch and per image, and
// max |p - p_ref| where p = sigmoid(logits) (softmax for a single-label config.json beside the
// reference) and p_ref the reference's PyTorch probabilities for the same images.
// The last lines are `RESULT {json}` for run.sh.
import { readFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

function usage() {
  console.error('usage: node ort_bench.mjs MODEL.onnx REFERENCE.safetensors [--runs N] [--warmup W] [--batches 1,8]');
  process.exit(2);
}

const args = process.argv.slice(2);
const positional = [];
let runs = 10;
let warmup = 3;
let batches = [1, 8];
for (let i = 0; i < args.length; ++i) {
  if (args[i] === '--runs') runs = Number(args[++i]);
  else if (args[i] === '--warmup') warmup = Number(args[++i]);
  else if (args[i] === '--batches') batches = args[++i].split(',').map(Number);
  else positional.push(args[i]);
}
if (positional.length !== 2 || !(runs > 0) || !(warmup >= 0)) usage();
const [modelPath, refPath] = positional;

// ---------------------------------------------------------------------------------------------
// safetensors: 8-byte little-endian header length N, N bytes of JSON, then the raw data.
// ---------------------------------------------------------------------------------------------
function readSafetensors(path) {
  const raw = readFileSync(path);
  const n = raw.readBigUInt64LE(0);
  if (n > BigInt(raw.length - 8)) throw new Error(`${path}: header length ${n} exceeds the file`);
  const headerLen = Number(n);
  const header = JSON.parse(raw.subarray(8, 8 + headerLen).toString('utf8'));
  const base = 8 + headerLen;
  const tensors = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [begin, end] = info.data_offsets;
    const numel = info.shape.reduce((a, b) => a * b, 1);
    if (info.dtype !== 'F32') { tensors[name] = { dtype: info.dtype, shape: info.shape, data: null }; continue; }
    if (end - begin !== 4 * numel) throw new Error(`${path}: ${name}: ${end - begin} bytes for ${numel} floats`);
    if (base + end > raw.length) throw new Error(`${path}: ${name}: data past the end of the file`);
    // Copy into a fresh (4-byte aligned) buffer and decode little-endian explicitly.
    const data = new Float32Array(numel);
    const view = new DataView(raw.buffer, raw.byteOffset + base + begin, end - begin);
    for (let i = 0; i < numel; ++i) data[i] = view.getFloat32(4 * i, true);
    tensors[name] = { dtype: 'F32', shape: info.shape, data };
  }
  return tensors;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const prefix = resolve(process.env.ORT_NODE_PREFIX || process.cwd());
const require = createRequire(join(prefix, 'node_modules', '.package-lock.json'));
let ort;
try {
  ort = require('onnxruntime-node');
} catch (e) {
  console.error(`ort_bench: cannot load onnxruntime-node from ${prefix}/node_modules (${e.message}); set ORT_NODE_PREFIX`);
  process.exit(1);
}

const ref = readSafetensors(refPath);
const px = ref.pixel_values;
const probs = ref.probabilities;
if (!px || !px.data || px.shape.length !== 4) throw new Error(`${refPath}: no F32 pixel_values [B,C,H,W]`);
if (!probs || !probs.data) throw new Error(`${refPath}: no F32 probabilities`);
const [refBatch, C, H, W] = px.shape;
const numLabels = probs.shape[1];
const imageSize = C * H * W;

let multiLabel = true;
const configPath = join(dirname(refPath), 'config.json');
if (existsSync(configPath)) {
  const config = JSON.parse(readFileSync(configPath, 'utf8'));
  multiLabel = config.problem_type === 'multi_label_classification';
}

function toProbabilities(logits, rows) {
  const p = new Float64Array(rows * numLabels);
  for (let r = 0; r < rows; ++r) {
    const row = logits.subarray(r * numLabels, (r + 1) * numLabels);
    if (multiLabel) {
      for (let j = 0; j < numLabels; ++j) p[r * numLabels + j] = 1 / (1 + Math.exp(-row[j]));
    } else {
      const mx = Math.max(...row);
      let sum = 0;
      for (let j = 0; j < numLabels; ++j) sum += Math.exp(row[j] - mx);
      for (let j = 0; j < numLabels; ++j) p[r * numLabels + j] = Math.exp(row[j] - mx) / sum;
    }
  }
  return p;
}

const sessionOptions = {
  executionProviders: ['cpu'],
  intraOpNumThreads: 2,
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
  executionMode: 'sequential',
};
const t0 = performance.now();
const session = await ort.InferenceSession.create(modelPath, sessionOptions);
const loadMs = performance.now() - t0;
const version = (ort.env && ort.env.versions && ort.env.versions.node) || 'unknown';
console.log(`onnxruntime-node ${version}, ${modelPath} loaded in ${loadMs.toFixed(0)} ms; inputs ${session.inputNames}, outputs ${session.outputNames}`);

const results = [];
for (const batch of batches) {
  const input = new Float32Array(batch * imageSize);
  for (let b = 0; b < batch; ++b) input.set(px.data.subarray((b % refBatch) * imageSize, (b % refBatch + 1) * imageSize), b * imageSize);
  const feeds = { pixel_values: new ort.Tensor('float32', input, [batch, C, H, W]) };

  let out;
  for (let i = 0; i < warmup; ++i) out = await session.run(feeds);
  const times = [];
  for (let i = 0; i < runs; ++i) {
    const t = performance.now();
    out = await session.run(feeds);
    times.push(performance.now() - t);
  }
  if (!out) out = await session.run(feeds);
  const logits = out.logits;
  if (logits.dims[0] !== batch || logits.dims[1] !== numLabels) throw new Error(`logits dims ${logits.dims}`);
  const p = toProbabilities(logits.data, batch);
  let worst = 0;
  for (let b = 0; b < batch; ++b) {
    for (let j = 0; j < numLabels; ++j) {
      worst = Math.max(worst, Math.abs(p[b * numLabels + j] - probs.data[(b % refBatch) * numLabels + j]));
    }
  }
  const med = median(times);
  console.log(`batch ${batch}: median ${med.toFixed(2)} ms/batch, ${(med / batch).toFixed(2)} ms/image ` +
              `(min ${Math.min(...times).toFixed(2)}, max ${Math.max(...times).toFixed(2)}, ${runs} runs after ${warmup} warm-up); ` +
              `max |sigmoid(logits) - p_ref| = ${worst.toExponential(3)}`);
  results.push({ engine: `ONNX Runtime ${version}`, batch, runs, median_ms: med, ms_per_image: med / batch, max_dp: worst, times_ms: times });
}
for (const r of results) console.log(`RESULT ${JSON.stringify(r)}`);
