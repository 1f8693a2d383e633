/**
 * A-weighted loudness per frame, numerically audioforge.ddsp.loudness.compute_loudness (16 kHz, 250 frames/s).
 *
 * Frames of nFft samples centred on i*hop (zero padded, floor(n / hop) + 1 frames), periodic Hann window; power
 * |X_k|^2 / (sum w)^2 weighted by the IEC 61672 A-curve (in power), averaged over the nFft/2 + 1 bins in linear
 * power, 10 log10, minus refDb = 10 log10(0.375 / (nFft/2 + 1)) so 0 dB is a full-scale 1 kHz sine, floored at
 * -rangeDb.
 */
import { fft } from './fft.js';

/** IEC 61672 A-weighting in dB (-Infinity at 0 Hz). */
export function aWeightingDb(f) {
  const f2 = f * f;
  const num = 12194 ** 2 * f2 * f2;
  const den = (f2 + 20.6 ** 2) * Math.sqrt((f2 + 107.7 ** 2) * (f2 + 737.9 ** 2)) * (f2 + 12194 ** 2);
  return 20 * Math.log10(num / den) + 2.0;
}

/** The dB offset that makes a full-scale 1 kHz sine read 0 dB. */
export function loudnessReferenceDb(nFft = 512) {
  return 10 * Math.log10(0.375 / (Math.floor(nFft / 2) + 1));
}

/** A reusable per-frame loudness meter. */
export class Loudness {
  constructor({ sr = 16000, frameRate = 250, nFft = 512, rangeDb = 80 } = {}) {
    if (sr % frameRate !== 0) throw new RangeError(`frameRate ${frameRate} must divide sr ${sr}`);
    if ((nFft & (nFft - 1)) !== 0) throw new RangeError(`nFft must be a power of two, got ${nFft}`);
    this.sr = sr;
    this.hop = sr / frameRate;
    this.nFft = nFft;
    this.rangeDb = rangeDb;
    this.window = new Float64Array(nFft);
    let wsum = 0;
    for (let i = 0; i < nFft; i++) { this.window[i] = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / nFft); wsum += this.window[i]; }
    const nBins = nFft / 2 + 1;
    this.weight = new Float64Array(nBins);
    for (let k = 0; k < nBins; k++) this.weight[k] = 10 ** (aWeightingDb((k * sr) / nFft) / 10) / (wsum * wsum);
    this.refDb = loudnessReferenceDb(nFft);
    this.re = new Float64Array(nFft);
    this.im = new Float64Array(nFft);
  }

  /** Loudness (dB) of the frame of nFft samples starting at `start` of y (zeros outside y). */
  frameAt(y, start) {
    const { nFft, re, im, window: win, weight } = this;
    for (let j = 0; j < nFft; j++) {
      const s = start + j;
      re[j] = s >= 0 && s < y.length ? y[s] * win[j] : 0;
      im[j] = 0;
    }
    fft(re, im);
    let p = 0;
    for (let k = 0; k <= nFft / 2; k++) p += (re[k] * re[k] + im[k] * im[k]) * weight[k];
    p /= nFft / 2 + 1;
    return Math.max(10 * Math.log10(Math.max(p, 1e-20)) - this.refDb, -this.rangeDb);
  }
}

/**
 * compute_loudness on a whole signal.
 * @param {ArrayLike<number>} y mono samples
 * @param {object} [options] sr, frameRate, nFft, rangeDb
 * @returns {Float64Array} floor(n / hop) + 1 values in dB
 */
export function computeLoudness(y, options = {}) {
  const meter = new Loudness(options);
  const nFrames = Math.floor(y.length / meter.hop) + 1;
  const out = new Float64Array(nFrames);
  for (let i = 0; i < nFrames; i++) out[i] = meter.frameAt(y, i * meter.hop - meter.nFft / 2);
  return out;
}
