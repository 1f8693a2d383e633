/**
 * The whole timbre transfer of one recording, in the browser (or node): 16 kHz audio in, the instrument's audio out.
 *
 *   analyse()        YIN f0 + confidence and A-weighted loudness at 250 frames/s (pitch.js, loudness.js)
 *   adjustControls() note detection, auto-adjust to the instrument's statistics, shifts, f0 held (controls.js)
 *   Renderer         per block of frames: the ONNX decoder (GRU state carried, scaled controls out) -> harmonic
 *                    synth (phase carried) + filtered noise (tail carried) [+ reverb] (decoder.js, synth.js)
 *
 * Blocks are rendered one after the other and handed to `onBlock` as soon as they are ready, so playback can start
 * before the whole recording is processed. Streaming with carried state gives exactly the one-shot output.
 */
import { computeLoudness } from './loudness.js';
import { yinF0 } from './pitch.js';
import { adjustControls } from './controls.js';
import { FilteredNoise, HarmonicSynth, Reverb, uniformNoise } from './synth.js';

const now = () => globalThis.performance?.now() ?? Date.now();

/** f0 / confidence (yin_f0) and loudness (compute_loudness) of 16 kHz mono audio. */
export function analyse(y16) {
  const { f0, confidence } = yinF0(y16);
  const loudness = computeLoudness(y16);
  return { f0, confidence, loudness };
}

/** Decoder + synthesizers with carried state. */
export class Renderer {
  /**
   * @param {import('./decoder.js').Decoder} decoder
   * @param {{seed?: number, reverbIr?: ArrayLike<number>|null}} [opts]
   */
  constructor(decoder, { seed = 0, reverbIr = null } = {}) {
    const cfg = decoder.cfg;
    this.decoder = decoder;
    this.cfg = cfg;
    this.harmonic = new HarmonicSynth({ sr: cfg.sr, hop: cfg.hop, nHarmonics: cfg.n_harmonics,
      amplitudeUpsampling: cfg.amplitude_upsampling ?? 'windowed' });
    this.noise = new FilteredNoise({ nBands: cfg.n_noise_bands, hop: cfg.hop });
    this.reverb = reverbIr ? new Reverb(reverbIr) : null;
    this.seed = seed;
    this.reset();
  }

  reset() {
    this.decoder.reset();
    this.harmonic.reset();
    this.noise.reset();
    this.reverb?.reset();
    this.rng = uniformNoise(this.seed);
    this.timings = { decode: 0, synth: 0 };
  }

  /**
   * Synthesize from scaled controls (the decoder's outputs): amplitude (T), distribution (T x H), noise band
   * magnitudes (T x B), and the f0 they were decoded from. `noise`: the excitation (default: the seeded PRNG).
   */
  synthesize({ amplitude, distribution, noise: mags }, f0, noise = null) {
    const { n_harmonics: K, hop } = this.cfg;
    const t = f0.length;
    const amps = new Float64Array(t * K);
    for (let i = 0; i < t; i++) for (let k = 0; k < K; k++) amps[i * K + k] = amplitude[i] * distribution[i * K + k];
    const harm = this.harmonic.process(amps, f0);
    const exc = noise ?? this.rng(new Float64Array(t * hop));
    const filtered = this.noise.process(mags, exc);
    for (let i = 0; i < harm.length; i++) harm[i] += filtered[i];
    return this.reverb ? this.reverb.process(harm) : harm;
  }

  /** Decode and render one block of frames (f0 in Hz, loudness in dB); returns frames * hop samples. */
  async render(f0, loudness) {
    const t0 = now();
    const controls = await this.decoder.run(f0, loudness);
    const t1 = now();
    const audio = this.synthesize(controls, f0);
    this.timings.decode += t1 - t0;
    this.timings.synth += now() - t1;
    return audio;
  }
}

/**
 * Timbre transfer of a whole recording.
 * @param {Float32Array|Float64Array} y16 mono input at 16 kHz
 * @param {{decoder: import('./decoder.js').Decoder, controls: object}} instrument from loadInstrument()
 * @param {{autoAdjust?: boolean, pitchShift?: number, loudnessShift?: number, seed?: number,
 *          blockFrames?: number}} [opts]
 * @param {(block: Float32Array, start: number) => void|Promise<void>} [onBlock] each rendered block (16 kHz)
 * @returns {Promise<{audio: Float32Array, sr: number, gain: number, octave: number, tracked: object,
 *           controls: object, timings: object, rtf: number}>}
 */
export async function timbreTransfer(y16, instrument, opts = {}, onBlock = null) {
  const { decoder, controls } = instrument;
  const cfg = decoder.cfg;
  const tStart = now();
  const tracked = analyse(y16);
  const tAnalysed = now();
  const ctl = adjustControls(tracked, controls.statistics ?? null, opts);
  const renderer = new Renderer(decoder, { seed: opts.seed ?? 0, reverbIr: controls.reverb_ir ?? null });
  const fixed = cfg.onnx.frames;
  let blockFrames = opts.blockFrames ?? 250;
  if (fixed) blockFrames = fixed * Math.max(1, Math.round(blockFrames / fixed));
  const nFrames = ctl.f0.length;
  const hop = cfg.hop;
  const full = new Float32Array(nFrames * hop);
  for (let s = 0; s < nFrames; s += blockFrames) {
    const e = Math.min(nFrames, s + blockFrames);
    const block = await renderer.render(ctl.f0.subarray(s, e), ctl.loudness.subarray(s, e));
    const start = s * hop;
    const end = Math.min(y16.length, start + block.length);
    if (end > start) {
      const out = Float32Array.from(block.subarray(0, end - start));
      full.set(out, start);
      if (onBlock) await onBlock(out, start);
    }
  }
  const audio = full.slice(0, y16.length);
  let peak = 0;
  for (const v of audio) peak = Math.max(peak, Math.abs(v));
  const gain = peak > 0.99 ? 0.99 / peak : 1;
  if (gain !== 1) for (let i = 0; i < audio.length; i++) audio[i] *= gain;
  const tEnd = now();
  const seconds = y16.length / cfg.sr;
  const timings = { analysis_ms: tAnalysed - tStart, decode_ms: renderer.timings.decode,
    synth_ms: renderer.timings.synth, total_ms: tEnd - tStart, seconds };
  return { audio, sr: cfg.sr, gain, octave: ctl.octave, tracked, controls: ctl, timings,
    rtf: timings.total_ms / 1000 / seconds };
}
