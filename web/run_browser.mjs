// Drives headless Chromium (the system's, over the DevTools protocol with playwright-core)
// against a running `kfp-edge serve-web`: runs fixed rows through models and times calls.
//
//   node run_browser.mjs URL JOB.json      JOB: {"rows": [[...]], "runs": 1000, "warmup": 100,
//                                                "models": [names] (default: browser-ready),
//                                                "script": optional page module to import}
//   or a JOB {"ui": {"row": [...] | "csv": "text"}}: fills the page's form or CSV box, submits
//   and returns {"table": [[cells]], "error", "isolated", "status"} (what a user sees).
// Prints one JSON object: {"results": [{name, outputs, latency_us}], "isolated", "console"}.
import {readFileSync} from 'node:fs';
import {chromium} from 'playwright-core';

const [url, jobFile] = process.argv.slice(2);
const job = JSON.parse(readFileSync(jobFile, 'utf8'));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--headless=new'],
});
const consoleLines = [];

async function useForm(page, ui) {
  if (ui.row) {
    for (const [i, v] of ui.row.entries()) await page.fill(`#f${i}`, String(v));
    await page.click('#row-form button');
  } else {
    await page.fill('#csv', ui.csv);
    await page.click('#csv-form button');
  }
  const want = ui.expectRows ?? 1;
  await page.waitForFunction(
    (n) => document.querySelector('#results tbody').rows.length >= n || document.getElementById('error').textContent,
    want, {timeout: 30000});
  return page.evaluate(() => ({
    header: Array.from(document.querySelectorAll('#results thead th'), (th) => th.textContent),
    table: Array.from(document.querySelectorAll('#results tbody tr'), (tr) => Array.from(tr.cells, (td) => td.textContent)),
    error: document.getElementById('error').textContent,
    isolated: self.crossOriginIsolated,
    status: document.getElementById('status').textContent,
  }));
}
try {
  const page = await browser.newPage();
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => window.kfpEdge && window.kfpEdge.ready, null, {timeout: 60000});
  const out = job.ui ? await useForm(page, job.ui) : await page.evaluate(async (job) => {
    const api = job.script ? await import(job.script) : window.kfpEdge;
    const models = window.kfpEdge.models || [];
    const wanted = job.models || models.filter((m) => m.browser_ready).map((m) => m.name);
    const results = [];
    for (const name of wanted) {
      const entry = models.find((m) => m.name === name);
      if (!entry) throw new Error(`no model ${name} on the page`);
      results.push(await api.measure(entry, job.rows, job.runs ?? 1000, job.warmup ?? 100, job));
    }
    return {results, isolated: self.crossOriginIsolated, status: document.getElementById('status').textContent};
  }, job);
  process.stdout.write(JSON.stringify({...out, console: consoleLines}) + '\n');
} catch (err) {
  process.stderr.write(`${err.stack || err}\n${consoleLines.join('\n')}\n`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
