// Drives web/index.html in headless Chromium (playwright-core, Debian's chromium) with a fake microphone:
//   node e2e.mjs <page url> <fake-mic wav> <out.json> [record seconds] [benchmark seconds]
// Records from the fake microphone, processes, reads back the input and the result as WAV (base64), then times
// af.benchmark(). Writes {input, result, summary, bench, logs} to out.json.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [, , url, micWav, outPath, recordS = '4', benchS = '10'] = process.argv;
const profile = mkdtempSync(join(tmpdir(), 'af-chromium-'));
const logs = [];
// a fresh, empty profile (playwright passes it as --user-data-dir)
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${micWav}`, '--autoplay-policy=no-user-gesture-required'],
});
try {
  const page = await browser.newPage();
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => window.af && (window.af.ready || window.af.error), null, { timeout: 30000 });
  const err = await page.evaluate(() => window.af.error);
  if (err) throw new Error(`page failed to load: ${err}`);
  await page.click('#record');
  await page.waitForFunction(() => window.af.status === 'recording…', null, { timeout: 10000 });
  await page.waitForTimeout(Number(recordS) * 1000);
  await page.click('#stop');
  await page.waitForFunction(() => window.af.input || window.af.error, null, { timeout: 10000 });
  await page.click('#process');
  await page.waitForFunction(() => window.af.status === 'done' || window.af.error, null, { timeout: 60000 });
  const state = await page.evaluate(() => ({ error: window.af.error, summary: window.af.summary(),
    input: window.af.inputWavBase64(), result: window.af.resultWavBase64(),
    download: !document.getElementById('download').hidden }));
  if (state.error) throw new Error(`processing failed: ${state.error}`);
  const bench = await page.evaluate((s) => window.af.benchmark(s), Number(benchS));
  writeFileSync(outPath, JSON.stringify({ ...state, bench, logs }));
} catch (e) {
  writeFileSync(outPath, JSON.stringify({ error: String(e?.message ?? e), logs }));
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
