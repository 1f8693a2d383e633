/**
 * YIN f0 + confidence at 16 kHz, numerically the variant of audioforge.ddsp.pitch.yin_f0 (float64 throughout).
 *
 * Frame i covers samples [i*hop - left, i*hop - left + frameLength) with zeros outside the signal, where
 * left = (frameLength - tauMax) / 2 centres the *integration window* (the first frameLength - tauMax samples) on
 * i*hop. A signal of n samples gives floor(n / hop) + 1 frames. Per frame: difference function d(tau) over lags
 * 0..tauMax (FFT cross-correlation), cumulative-mean normalisation d', the first local minimum of d' below the
 * threshold in [tauMin, tauMax] (else the global minimum), parabolic interpolation, f0 = 16000 / tau,
 * confidence = clip(1 - d'(tau), 0, 1). Frames whose RMS is below silenceDb (dBFS) get f0 = 0, confidence = 0.
 */
import { fft } from './fft.js';

export const YIN_SR = 16000;

/** Settings derived from the yin_f0 keywords (defaults = the Python defaults). */
export function yinConfig({ hopLength = 64, frameLength = 1024, fmin = 40, fmax = 2000, threshold = 0.1,
  silenceDb = -60 } = {}) {
  if (!(fmin > 0 && fmin < fmax && fmax <= YIN_SR / 2) || !(threshold > 0 && threshold < 1)) {
    throw new RangeError(`need 0 < fmin < fmax <= 8000 Hz and 0 < threshold < 1, got ${fmin}, ${fmax}, ${threshold}`);
  }
  const tauMax = Math.min(Math.ceil(YIN_SR / fmin), Math.floor(frameLength / 2));
  const tauMin = Math.max(2, Math.floor(YIN_SR / fmax));
  if (tauMin >= tauMax - 1) throw new RangeError('fmin / fmax leave no lag range for this frame length');
  const w = frameLength - tauMax;
  const size = 2 ** Math.ceil(Math.log2(frameLength + w));
  const left = Math.floor((frameLength - tauMax) / 2);
  return { hopLength, frameLength, tauMax, tauMin, w, size, left, threshold, silenceDb };
}

/** A reusable per-frame YIN estimator (allocates its buffers once). */
export class Yin {
  constructor(options = {}) {
    this.cfg = yinConfig(options);
    const { size, tauMax, frameLength } = this.cfg;
    this.re = new Float64Array(size);
    this.im = new Float64Array(size);
    this.corr = new Float64Array(tauMax + 1);
    this.sq = new Float64Array(frameLength + 1);
    this.cmnd = new Float64Array(tauMax + 1);
    this.diff = new Float64Array(tauMax + 1);
    this.pr = new Float64Array(size);
    this.pi = new Float64Array(size);
  }

  /**
   * f0 and confidence of one frame of frameLength float64 samples.
   * @param {Float64Array} x
   * @returns {[number, number]}
   */
  frame(x) {
    const { size, tauMax, tauMin, w, frameLength, threshold, silenceDb } = this.cfg;
    const { re, im, corr, sq, cmnd, diff, pr, pi } = this;
    // Both real FFTs at once: z = a + i b with a = x[:w] (zero padded), b = x
    re.fill(0); im.fill(0);
    for (let j = 0; j < w; j++) re[j] = x[j];
    for (let j = 0; j < frameLength; j++) im[j] = x[j];
    fft(re, im);
    // P_k = conj(A_k) B_k; A_k = (Z_k + conj Z_{-k}) / 2, B_k = (Z_k - conj Z_{-k}) / (2i)
    for (let k = 0; k < size; k++) {
      const m = (size - k) & (size - 1);
      const zr = re[k], zi = im[k], cr = re[m], ci = -im[m];
      const ar = 0.5 * (zr + cr), ai = 0.5 * (zi + ci);
      // (zr - cr + i (zi - ci)) / (2i) = ((zi - ci) - i (zr - cr)) / 2
      const br = 0.5 * (zi - ci), bi = -0.5 * (zr - cr);
      pr[k] = ar * br + ai * bi;
      pi[k] = ar * bi - ai * br;
    }
    fft(pr, pi, true);
    sq[0] = 0;
    let ms = 0;
    for (let j = 0; j < frameLength; j++) { sq[j + 1] = sq[j] + x[j] * x[j]; ms += x[j] * x[j]; }
    const e0 = sq[w] - sq[0];
    // a silent integration window correlates to exactly 0 (the packed FFT would leave rounding noise there)
    for (let t = 0; t <= tauMax; t++) corr[t] = e0 === 0 ? 0 : pr[t] / size;
    for (let t = 0; t <= tauMax; t++) {
      const et = sq[t + w] - sq[t];
      diff[t] = Math.max(e0 + et - 2 * corr[t], 0);
    }
    cmnd[0] = 1;
    let cum = 0;
    const floor = 1e-12 * (e0 + 1e-30);
    for (let t = 1; t <= tauMax; t++) {
      cum += diff[t];
      cmnd[t] = cum > floor ? (diff[t] * t) / cum : 1;
    }
    const len = tauMax - tauMin + 1; // seg[i] = cmnd[tauMin + i]
    let best = -1;
    for (let i = 1; i < len - 1; i++) {
      const v = cmnd[tauMin + i];
      if (v <= cmnd[tauMin + i - 1] && v < cmnd[tauMin + i + 1] && v < threshold) { best = i; break; }
    }
    if (best < 0) {
      best = 0;
      for (let i = 1; i < len; i++) if (cmnd[tauMin + i] < cmnd[tauMin + best]) best = i;
    }
    best = Math.min(Math.max(best, 1), len - 2);
    const l = cmnd[tauMin + best - 1], mid = cmnd[tauMin + best], r = cmnd[tauMin + best + 1];
    const denom = l - 2 * mid + r;
    let shift = Math.abs(denom) > 1e-12 ? (0.5 * (l - r)) / denom : 0;
    shift = Math.min(Math.max(shift, -1), 1);
    const f0 = YIN_SR / (best + tauMin + shift);
    const conf = Math.min(Math.max(1 - mid, 0), 1);
    const rmsDb = 10 * Math.log10(Math.max(ms / frameLength, 1e-20));
    return rmsDb < silenceDb ? [0, 0] : [f0, conf];
  }
}

/**
 * Frame i's analysis window of a signal (zeros outside it), as float64.
 * @param {ArrayLike<number>} y
 * @param {number} start first sample (may be negative)
 * @param {number} length
 * @param {Float64Array} [out]
 */
export function window(y, start, length, out = new Float64Array(length)) {
  for (let j = 0; j < length; j++) {
    const s = start + j;
    out[j] = s >= 0 && s < y.length ? y[s] : 0;
  }
  return out;
}

/**
 * yin_f0 on a whole 16 kHz signal.
 * @param {ArrayLike<number>} y mono samples at 16 kHz
 * @param {object} [options] hopLength, frameLength, fmin, fmax, threshold, silenceDb
 * @returns {{f0: Float64Array, confidence: Float64Array}} floor(n / hop) + 1 frames each
 */
export function yinF0(y, options = {}) {
  const yin = new Yin(options);
  const { hopLength, frameLength, left } = yin.cfg;
  const nFrames = Math.floor(y.length / hopLength) + 1;
  const f0 = new Float64Array(nFrames);
  const confidence = new Float64Array(nFrames);
  const buf = new Float64Array(frameLength);
  for (let i = 0; i < nFrames; i++) {
    window(y, i * hopLength - left, frameLength, buf);
    [f0[i], confidence[i]] = yin.frame(buf);
  }
  return { f0, confidence };
}
