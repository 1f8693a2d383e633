// Runs one web/dsp operation under node for the Python parity tests: `node runner.mjs in.json out.json`.
// in.json: {"op": ..., ...arrays as JSON lists}; out.json: the results as JSON lists.
import { readFileSync, writeFileSync } from 'node:fs';
import { computeLoudness } from '../../web/dsp/loudness.js';
import { yinF0 } from '../../web/dsp/pitch.js';
import { FilteredNoise, HarmonicSynth, Reverb, scaleRawOutputs } from '../../web/dsp/synth.js';
import { resample } from '../../web/dsp/resample.js';
import { decodeWav, encodeWav } from '../../web/dsp/wav.js';
import { adjustControls } from '../../web/dsp/controls.js';
import { Renderer } from '../../web/dsp/transfer.js';
import { resolveConfig } from '../../web/dsp/decoder.js';

const arr = (x) => Array.from(x);

/** Split n frames into consecutive blocks of the given sizes (the rest in a last block). */
function blocks(n, sizes) {
  const out = [];
  let s = 0;
  for (const b of sizes ?? []) { if (s >= n) break; out.push([s, Math.min(n, s + b)]); s += b; }
  if (s < n) out.push([s, n]);
  return out;
}

const ops = {
  yin: (p) => { const r = yinF0(p.audio, p.options ?? {}); return { f0: arr(r.f0), confidence: arr(r.confidence) }; },
  loudness: (p) => ({ loudness: arr(computeLoudness(p.audio, p.options ?? {})) }),
  harmonic: (p) => {
    const synth = new HarmonicSynth(p.options);
    const K = synth.nHarmonics;
    const hop = synth.hop;
    const out = new Float64Array(p.f0.length * hop);
    for (const [s, e] of blocks(p.f0.length, p.blocks)) {
      out.set(synth.process(p.amps.slice(s * K, e * K), p.f0.slice(s, e)), s * hop);
    }
    return { audio: arr(out), phase: synth.phase };
  },
  noise: (p) => {
    const fn = new FilteredNoise(p.options);
    const { nBands: B, hop } = fn;
    const t = p.mags.length / B;
    const out = new Float64Array(t * hop);
    for (const [s, e] of blocks(t, p.blocks)) {
      out.set(fn.process(p.mags.slice(s * B, e * B), p.noise.slice(s * hop, e * hop)), s * hop);
    }
    return { audio: arr(out), tail: arr(fn.tail) };
  },
  reverb: (p) => {
    const rv = new Reverb(p.ir);
    const out = [];
    let s = 0;
    for (const b of [...(p.blocks ?? []), p.audio.length]) {
      const e = Math.min(p.audio.length, s + b);
      out.push(...rv.process(p.audio.slice(s, e)));
      s = e;
      if (s >= p.audio.length) break;
    }
    return { audio: out };
  },
  render: (p) => {
    // DDSPAutoencoder.controls + synthesize: raw decoder outputs -> scale functions -> harmonic + noise
    const cfg = resolveConfig(p.config);
    const r = new Renderer({ cfg, reset() {} }, { reverbIr: p.reverb_ir ?? null });
    const H = cfg.n_harmonics, B = cfg.n_noise_bands, N = 1 + H + B;
    const out = new Float64Array(p.f0.length * cfg.hop);
    for (const [s, e] of blocks(p.f0.length, p.blocks)) {
      const f0 = p.f0.slice(s, e);
      const ctl = scaleRawOutputs(p.raw.slice(s * N, e * N), f0, { nHarmonics: H, nBands: B, sr: cfg.sr });
      out.set(r.synthesize(ctl, f0, p.noise.slice(s * cfg.hop, e * cfg.hop)), s * cfg.hop);
    }
    return { audio: arr(out) };
  },
  resample: (p) => ({ audio: arr(resample(p.audio, p.in_rate, p.out_rate)) }),
  wav: (p) => {
    const buf = encodeWav(p.audio, p.sr, { float: p.float ?? false });
    const back = decodeWav(buf);
    return { bytes: Buffer.from(buf).toString('base64'), sr: back.sr, audio: arr(back.channels[0]) };
  },
  controls: (p) => {
    try {
      const r = adjustControls(p.tracked, p.statistics ?? null, p.options ?? {});
      return { f0: arr(r.f0), loudness: arr(r.loudness), note: arr(r.note), octave: r.octave };
    } catch (err) {
      return { error: err.message };
    }
  },
};

const [, , inPath, outPath] = process.argv;
const payload = JSON.parse(readFileSync(inPath, 'utf8'));
const op = ops[payload.op];
if (!op) throw new Error(`unknown op ${payload.op}`);
const t0 = performance.now();
const result = op(payload);
result.elapsed_ms = performance.now() - t0;
writeFileSync(outPath, JSON.stringify(result));
