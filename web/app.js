// The page: pick a model of /models/index.json, enter a row (form) or paste CSV rows, and see
// class probabilities and the latency of each prediction. window.kfpEdge is what the
// Chromium test and the benchmark drive (run_browser.mjs).
import {loadModel, loadRuntime, measure, parseCsv, predictRow} from './litert_client.js';

const $ = (id) => document.getElementById(id);
let models = [];
let current = null;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

function showError(err) {
  $('error').textContent = err ? String(err.message || err) : '';
}

function classNames(entry) {
  return entry.classes || Array.from({length: entry.num_classes}, (_, i) => `class ${i}`);
}

function buildForm(entry) {
  const box = $('features');
  box.replaceChildren(el('legend', 'One row'));
  const names = entry.feature_columns || Array.from({length: entry.num_features}, (_, i) => `x${i}`);
  names.forEach((name, i) => {
    const label = el('label', `${name} `);
    const input = el('input');
    Object.assign(input, {type: 'number', step: 'any', required: true, id: `f${i}`, value: '0'});
    label.append(input);
    box.append(label);
  });
  const head = $('results').tHead;
  const row = el('tr');
  for (const text of ['#', ...classNames(entry), 'predicted', 'latency (µs)']) row.append(el('th', text));
  head.replaceChildren(row);
  $('results').tBodies[0].replaceChildren();
}

async function selectModel(index) {
  showError(null);
  if (current) current.model.delete();
  current = null;
  const entry = models[index];
  if (!entry.browser_ready) {
    $('model-info').textContent = `${entry.name} cannot run in the browser: ${entry.reasons.join('; ')}`;
    return;
  }
  $('model-info').textContent = `${entry.name}: ${entry.num_features} features, ${entry.num_classes} classes`;
  buildForm(entry);
  current = await loadModel(entry);
}

async function predictRows(rows) {
  const body = $('results').tBodies[0];
  const names = classNames(current.entry);
  for (const row of rows) {
    const {probabilities, ms} = await predictRow(current, row);
    const best = probabilities.indexOf(Math.max(...probabilities));
    const tr = el('tr');
    tr.append(el('td', String(body.rows.length + 1)));
    probabilities.forEach((p, k) => tr.append(el('td', p.toFixed(4), k === best ? 'best' : '')));
    tr.append(el('td', names[best]), el('td', (ms * 1000).toFixed(1)));
    body.append(tr);
  }
}

function guarded(fn) {
  return async (event) => {
    event.preventDefault();
    showError(null);
    try {
      if (!current) throw new Error('no browser-ready model is loaded');
      await fn();
    } catch (err) {
      showError(err);
    }
  };
}

async function main() {
  window.kfpEdge = {measure, ready: false};
  try {
    await loadRuntime();
    models = await (await fetch('/models/index.json')).json();
    window.kfpEdge.models = models;
    const select = $('model');
    models.forEach((m, i) => select.append(Object.assign(el('option', m.name), {value: String(i)})));
    select.addEventListener('change', () => selectModel(Number(select.value)).catch(showError));
    const first = Math.max(0, models.findIndex((m) => m.browser_ready));
    select.value = String(first);
    await selectModel(first);
    $('row-form').addEventListener('submit', guarded(() => {
      const row = Array.from({length: current.numFeatures}, (_, i) => Number($(`f${i}`).value));
      return predictRows([row]);
    }));
    $('csv-form').addEventListener('submit', guarded(() => predictRows(parseCsv($('csv').value, current.numFeatures))));
    $('status').textContent = `LiteRT.js ready (${self.crossOriginIsolated ? 'cross-origin isolated' : 'NOT isolated: coarse timers'})`;
  } catch (err) {
    $('status').textContent = 'LiteRT.js failed to start';
    showError(err);
  }
  window.kfpEdge.ready = true;
}

main();
