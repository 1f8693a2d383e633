/**
 * DDSP synthesis in JS, numerically audioforge.ddsp.core / synths (HarmonicSynth, FilteredNoise), streaming.
 *
 * Frame alignment (as core.py): frame i governs samples [i*hop, (i+1)*hop) and its value is reached at the last of
 * them; inside the hop the value moves from frame i-1 to frame i (linearly for f0, by a raised cosine for the
 * "windowed" amplitudes). Before the first frame, frame 0 is repeated, or the previous block's last frame when
 * streaming. Both synths carry a state between process() calls, so block-wise output equals one long call.
 * All arithmetic is float64 (JS numbers); the phase is accumulated in float64 and wrapped modulo 2 pi every
 * sample, so it stays exact for hours.
 */

import { fft } from './fft.js';

export const TWO_PI = 2 * Math.PI;

/** DDSP's scale function 2 * sigmoid(x) ** ln(10) + 1e-7. */
export function expSigmoid(x, exponent = 10, maxValue = 2, threshold = 1e-7) {
  return maxValue * (1 / (1 + Math.exp(-x))) ** Math.log(exponent) + threshold;
}

/** MIDI note number 69 + 12 log2(f / 440); f <= 0 (unvoiced) gives 0 (hz_to_midi). */
export function hzToMidi(f) {
  return f > 0 ? Math.max(69 + 12 * Math.log2(Math.max(f, 1e-3) / 440), 0) : 0;
}

/** 440 * 2 ** ((m - 69) / 12). */
export function midiToHz(m) {
  return 440 * 2 ** ((m - 69) / 12);
}

/** The hop's interpolation weights (j + 1) / hop (linear) or the raised cosine (windowed). */
export function upsampleWeights(hop, kind = 'linear') {
  const w = new Float64Array(hop);
  for (let j = 0; j < hop; j++) w[j] = kind === 'windowed' ? 0.5 - 0.5 * Math.cos((Math.PI * (j + 1)) / hop) : (j + 1) / hop;
  return w;
}

/**
 * Raw decoder outputs (T x (1 + H + B), frame-major) -> the scaled controls, as DDSPAutoencoder.controls (and the
 * exported DecoderStep graph) compute them: amplitude = expSigmoid(raw[0]); distribution = expSigmoid(raw[1..H])
 * zeroed where k f0 >= sr/2 and renormalised (sum + 1e-7); noise magnitudes = expSigmoid(raw[1+H..] + noiseBias).
 */
export function scaleRawOutputs(raw, f0, { nHarmonics = 60, nBands = 65, sr = 16000, noiseBias = -5 } = {}) {
  const t = f0.length;
  const n = 1 + nHarmonics + nBands;
  const amplitude = new Float64Array(t);
  const distribution = new Float64Array(t * nHarmonics);
  const noise = new Float64Array(t * nBands);
  for (let i = 0; i < t; i++) {
    const o = i * n;
    amplitude[i] = expSigmoid(raw[o]);
    let sum = 0;
    for (let k = 0; k < nHarmonics; k++) {
      const v = f0[i] * (k + 1) < sr / 2 ? expSigmoid(raw[o + 1 + k]) : 0;
      distribution[i * nHarmonics + k] = v;
      sum += v;
    }
    for (let k = 0; k < nHarmonics; k++) distribution[i * nHarmonics + k] /= sum + 1e-7;
    for (let b = 0; b < nBands; b++) noise[i * nBands + b] = expSigmoid(raw[o + 1 + nHarmonics + b] + noiseBias);
  }
  return { amplitude, distribution, noise };
}

/** Additive synthesis of integer harmonics with carried phase (HarmonicSynth, precise_phase). */
export class HarmonicSynth {
  constructor({ sr = 16000, hop = 64, nHarmonics = 60, amplitudeUpsampling = 'windowed' } = {}) {
    this.sr = sr;
    this.hop = hop;
    this.nHarmonics = nHarmonics;
    this.wF0 = upsampleWeights(hop, 'linear');
    this.wAmp = upsampleWeights(hop, amplitudeUpsampling);
    this.reset();
  }

  /** Back to the initial state (phase 0, no previous frame). */
  reset() {
    this.phase = 0;
    this.prevF0 = null;
    this.prevAmps = null;
  }

  /**
   * Render frames. `amps` holds nFrames x nHarmonics per-harmonic amplitudes (amplitude * distribution, frame-major),
   * `f0` nFrames values in Hz (0 = silent). Returns nFrames * hop samples (Float64Array).
   */
  process(amps, f0, out = new Float64Array(f0.length * this.hop)) {
    const { hop, nHarmonics: K, sr, wF0, wAmp } = this;
    const nFrames = f0.length;
    if (amps.length !== nFrames * K) throw new RangeError(`amps must have ${nFrames} x ${K} values, got ${amps.length}`);
    if (nFrames === 0) return out;
    let prevF0 = this.prevF0 ?? f0[0];
    const prevA = new Float64Array(K);
    if (this.prevAmps) prevA.set(this.prevAmps); else for (let k = 0; k < K; k++) prevA[k] = amps[k];
    const dA = new Float64Array(K);
    const radPerHz = TWO_PI / sr;
    const nyq = sr / 2;
    let phase = this.phase;
    for (let i = 0; i < nFrames; i++) {
      const f = f0[i];
      const base = i * K;
      for (let k = 0; k < K; k++) dA[k] = amps[base + k] - prevA[k];
      const df = f - prevF0;
      for (let j = 0; j < hop; j++) {
        const fj = prevF0 + df * wF0[j];
        phase += fj * radPerHz;
        if (phase >= TWO_PI) phase -= TWO_PI * Math.floor(phase / TWO_PI);
        // the number of audible harmonics at this sample: k f < sr / 2
        // (at f = 0 every harmonic counts, as in Python: the phase stops and the amplitudes still apply)
        let kMax = K;
        if (fj > 0) {
          kMax = Math.min(K, Math.ceil(nyq / fj) - 1);
          if (kMax * fj >= nyq) kMax -= 1;
        }
        const wa = wAmp[j];
        // sin(k phase) by the Chebyshev recurrence s_{k+1} = 2 cos(phase) s_k - s_{k-1}
        const s1 = Math.sin(phase);
        const c2 = 2 * Math.cos(phase);
        let sPrev = 0, s = s1, acc = 0;
        for (let k = 0; k < kMax; k++) {
          acc += (prevA[k] + dA[k] * wa) * s;
          const next = c2 * s - sPrev;
          sPrev = s; s = next;
        }
        out[i * hop + j] = acc;
      }
      for (let k = 0; k < K; k++) prevA[k] = amps[base + k];
      prevF0 = f;
    }
    this.phase = phase;
    this.prevF0 = prevF0;
    this.prevAmps = prevA;
    return out;
  }
}

/**
 * Frame-wise filtered noise (FilteredNoise): per frame a zero-phase FIR designed by frequency sampling (inverse real
 * DFT of nBands magnitudes, irSize = 2 (nBands - 1) taps), rotated by irSize / 2 to be causal, periodic Hann window;
 * each hop of noise is convolved with its frame's FIR (direct form, exact) and the irSize - 1 tails overlap-added,
 * carried across calls.
 */
export class FilteredNoise {
  constructor({ nBands = 65, hop = 64 } = {}) {
    this.nBands = nBands;
    this.hop = hop;
    this.irSize = 2 * (nBands - 1);
    const L = this.irSize;
    // basis[b][m]: contribution of band b to tap m of the rotated, windowed IR
    this.basis = new Float64Array(nBands * L);
    for (let m = 0; m < L; m++) {
      const n = (m - L / 2 + L) % L; // roll by L/2: tap m of the causal IR is sample n of the zero-phase one
      // the Python module stores its window in float32: fround keeps the two bit-compatible
      const win = Math.fround(0.5 - 0.5 * Math.cos((TWO_PI * m) / L));
      for (let b = 0; b < nBands; b++) {
        const scale = b === 0 || b === nBands - 1 ? 1 : 2;
        this.basis[b * L + m] = (win * scale * Math.cos((TWO_PI * b * n) / L)) / L;
      }
    }
    this.ir = new Float64Array(L);
    this.reset();
  }

  reset() {
    this.tail = new Float64Array(this.irSize - 1);
  }

  /** The windowed causal FIR of one frame's magnitudes (into this.ir). */
  impulseResponse(mags, offset = 0) {
    const { nBands, irSize: L, basis, ir } = this;
    ir.fill(0);
    for (let b = 0; b < nBands; b++) {
      const g = mags[offset + b];
      const row = b * L;
      for (let m = 0; m < L; m++) ir[m] += g * basis[row + m];
    }
    return ir;
  }

  /**
   * Filter `noise` (nFrames * hop samples, uniform in [-1, 1)) with `mags` (nFrames x nBands band magnitudes).
   * Returns nFrames * hop samples; the ringing past the block is kept for the next call.
   */
  process(mags, noise, out = new Float64Array(noise.length)) {
    const { hop, nBands, irSize: L } = this;
    const nFrames = noise.length / hop;
    if (!Number.isInteger(nFrames) || mags.length !== nFrames * nBands) {
      throw new RangeError(`need nFrames x ${nBands} magnitudes and nFrames x ${hop} noise samples`);
    }
    const n = noise.length;
    const buf = new Float64Array(n + L - 1);
    buf.set(this.tail, 0);
    for (let t = 0; t < nFrames; t++) {
      const ir = this.impulseResponse(mags, t * nBands);
      const s0 = t * hop;
      for (let i = 0; i < hop; i++) {
        const x = noise[s0 + i];
        if (x === 0) continue;
        const o = s0 + i;
        for (let m = 0; m < L; m++) buf[o + m] += x * ir[m];
      }
    }
    out.set(buf.subarray(0, n));
    this.tail = buf.slice(n);
    return out;
  }
}

/** A small seeded PRNG (mulberry32) for the noise excitation: uniform in [-1, 1). */
export function uniformNoise(seed = 0) {
  let a = seed >>> 0;
  return (out) => {
    for (let i = 0; i < out.length; i++) {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
    }
    return out;
  };
}

/**
 * The learned reverb of audioforge.ddsp.effects.Reverb: out = dry + dry * ir with tap 0 of the IR forced to zero,
 * by FFT convolution of each block with the whole IR; the ringing past a block is carried into the next one.
 */
export class Reverb {
  /** @param {ArrayLike<number>} ir impulse response (tap 0 is ignored) */
  constructor(ir) {
    if (ir.length < 2) throw new RangeError('the reverb IR needs at least 2 taps');
    this.ir = Float64Array.from(ir);
    this.ir[0] = 0;
    this.reset();
  }

  reset() {
    this.tail = new Float64Array(this.ir.length - 1);
  }

  process(audio, out = new Float64Array(audio.length)) {
    const n = audio.length;
    const L = this.ir.length;
    const total = n + L - 1;
    const size = 2 ** Math.ceil(Math.log2(total));
    const ar = new Float64Array(size), ai = new Float64Array(size);
    const br = new Float64Array(size), bi = new Float64Array(size);
    ar.set(audio); br.set(this.ir);
    fft(ar, ai); fft(br, bi);
    for (let k = 0; k < size; k++) {
      const r = ar[k] * br[k] - ai[k] * bi[k];
      ai[k] = ar[k] * bi[k] + ai[k] * br[k];
      ar[k] = r;
    }
    fft(ar, ai, true);
    const wet = new Float64Array(total);
    for (let i = 0; i < total; i++) wet[i] = ar[i] / size;
    for (let i = 0; i < this.tail.length; i++) wet[i] += this.tail[i];
    for (let i = 0; i < n; i++) out[i] = wet[i] + audio[i];
    this.tail = wet.slice(n);
    return out;
  }
}
