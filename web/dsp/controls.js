/**
 * From tracked pitch and loudness to the decoder's inputs, as audioforge.ddsp.transfer (extract_controls +
 * adjust_controls) and audioforge.ddsp.data (note_mask, hold_f0, map_quantiles) do it.
 *
 * Note frames: confidence >= 0.6 and loudness > -60 dB. Auto-adjust (needs the instrument's statistics, the
 * `statistics` object of controls.json, i.e. audioforge.ddsp.data.compute_statistics): the octave shift that brings
 * the mean note pitch closest to the instrument's, note-frame loudness quantile-mapped onto the instrument's table,
 * other frames lowered by quietDb * (1 - note ratio); the onsetLead frames (48 ms) before each note count as note
 * frames here. Then manual shifts, f0 held through non-note frames except those onsetLead frames, which take the
 * coming note's f0 (a tracker gets confident only some way into an attack), loudness clipped to [-80, 0] dB.
 */

export const SILENCE_DB = -70;
export const MIN_NOTE_FRAMES = 10;
export const ONSET_LEAD = 12;

/** before_onset: unvoiced frames at most `frames` before a voiced run (mask), and each frame's next voiced index. */
export function beforeOnset(voiced, frames) {
  const n = voiced.length;
  const mask = new Uint8Array(n);
  const next = new Int32Array(n);
  let nxt = n;
  for (let i = n - 1; i >= 0; i--) {
    if (voiced[i]) nxt = i;
    next[i] = Math.min(nxt, n - 1);
    mask[i] = !voiced[i] && nxt < n && nxt - i <= frames ? 1 : 0;
  }
  return { mask, next };
}

/** Error for inputs that cannot be transferred (silence, no pitch): the message is meant for the user. */
export class TransferInputError extends Error {}

/** np.quantile (linear interpolation) of `values` at each of `levels`. */
export function quantiles(values, levels) {
  const s = Float64Array.from(values).sort();
  const n = s.length;
  return Float64Array.from(levels, (q) => {
    const pos = q * (n - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(lo + 1, n - 1);
    return s[lo] + (s[hi] - s[lo]) * (pos - lo);
  });
}

function interp(x, xp, fp) {
  if (x <= xp[0]) return fp[0];
  const n = xp.length;
  if (x >= xp[n - 1]) return fp[n - 1];
  let lo = 0, hi = n - 1;
  while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (xp[mid] <= x) lo = mid; else hi = mid; }
  return fp[lo] + ((fp[hi] - fp[lo]) * (x - xp[lo])) / (xp[hi] - xp[lo]);
}

/** map_quantiles: values placed in the source table, read from the target (same level grid). */
export function mapQuantiles(values, source, target) {
  const n = source.length;
  if (n !== target.length || n < 2) throw new RangeError('quantile tables must have the same length (>= 2)');
  const src = Float64Array.from(source);
  const tgt = Float64Array.from(target);
  for (let i = 1; i < n; i++) { src[i] = Math.max(src[i], src[i - 1]); tgt[i] = Math.max(tgt[i], tgt[i - 1]); }
  const srcS = Float64Array.from(src, (v, i) => v + i * 1e-9);
  const levels = Float64Array.from({ length: n }, (_, i) => i / (n - 1));
  return Float64Array.from(values, (v) => {
    if (v < src[0]) return tgt[0] + (v - src[0]);
    if (v > src[n - 1]) return tgt[n - 1] + (v - src[n - 1]);
    return interp(interp(v, srcS, levels), levels, tgt);
  });
}

/**
 * hold_f0: carry the last voiced f0 through zeros; leading zeros take the first voiced value; with lead > 0 the
 * last `lead` zeros before a voiced run take that run's first value.
 */
export function holdF0(f0, lead = 0) {
  const out = Float64Array.from(f0);
  const first = out.findIndex((v) => v > 0);
  if (first < 0) return out;
  const voiced = Uint8Array.from(f0, (v) => (v > 0 ? 1 : 0));
  let held = out[first];
  for (let i = 0; i < out.length; i++) {
    if (out[i] > 0) held = out[i]; else out[i] = held;
  }
  if (lead > 0) {
    const { mask, next } = beforeOnset(voiced, lead);
    for (let i = 0; i < out.length; i++) if (mask[i]) out[i] = f0[next[i]];
  }
  return out;
}

/**
 * The decoder's f0 and loudness from the tracked controls.
 * @param {{f0: ArrayLike<number>, confidence: ArrayLike<number>, loudness: ArrayLike<number>}} tracked
 * @param {object|null} statistics the instrument's statistics (null: no auto-adjust)
 * @param {{autoAdjust?: boolean, pitchShift?: number, loudnessShift?: number, quietDb?: number,
 *          confidenceThreshold?: number, onsetLead?: number}} [opts]
 * @returns {{f0: Float64Array, loudness: Float64Array, note: Uint8Array, octave: number}}
 */
export function adjustControls(tracked, statistics, { autoAdjust = true, pitchShift = 0, loudnessShift = 0,
  quietDb = 20, confidenceThreshold = 0.6, onsetLead = ONSET_LEAD } = {}) {
  const { f0: f0In, confidence, loudness } = tracked;
  const n = f0In.length;
  let loudest = -Infinity;
  for (const v of loudness) loudest = Math.max(loudest, v);
  if (loudest < SILENCE_DB) {
    throw new TransferInputError(`the input is silent (loudest frame ${loudest.toFixed(0)} dB, below ${SILENCE_DB} dB); `
      + 'nothing to transfer');
  }
  const note = new Uint8Array(n);
  let nNotes = 0;
  for (let i = 0; i < n; i++) {
    note[i] = confidence[i] >= confidenceThreshold && loudness[i] > -60 && f0In[i] > 0 ? 1 : 0;
    nNotes += note[i];
  }
  if (nNotes < MIN_NOTE_FRAMES) {
    throw new TransferInputError(`no pitch found: only ${nNotes} frames have a confident f0; timbre transfer needs a `
      + 'monophonic, pitched recording');
  }
  if (!(pitchShift >= -24 && pitchShift <= 24) || !(loudnessShift >= -40 && loudnessShift <= 40)) {
    throw new RangeError('pitch shift must be within -24..24 semitones and loudness shift within -40..40 dB');
  }
  const f0 = Float64Array.from(f0In, (v, i) => (note[i] ? v : 0));
  let ld = Float64Array.from(loudness);
  let octave = 0;
  if (autoAdjust && statistics) {
    let meanIn = 0;
    for (let i = 0; i < n; i++) if (note[i]) meanIn += 69 + 12 * Math.log2(Math.max(f0[i], 1e-3) / 440);
    meanIn /= nNotes;
    octave = 12 * Math.round((statistics.pitch_note.mean - meanIn) / 12);
    const q = statistics.quantiles;
    const noteLd = ld.filter((_, i) => note[i]);
    const mapped = mapQuantiles(ld, quantiles(noteLd, q.levels), q.loudness_db);
    const drop = quietDb * (1 - nNotes / n);
    const attack = beforeOnset(note, onsetLead).mask;
    ld = Float64Array.from(ld, (v, i) => (note[i] || attack[i] ? mapped[i] : v - drop));
  }
  const ratio = 2 ** ((octave + pitchShift) / 12);
  const held = holdF0(f0, onsetLead);
  for (let i = 0; i < n; i++) {
    held[i] *= ratio;
    ld[i] = Math.min(Math.max(ld[i] + loudnessShift, -80), 0);
  }
  return { f0: held, loudness: ld, note, octave };
}

