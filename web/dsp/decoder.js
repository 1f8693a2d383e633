/**
 * The instrument's decoder, run with onnxruntime-web, and the model files that describe it.
 *
 * One instrument = an entry of the models manifest (models/manifest.json by default; see web/README.md):
 *   {"id": "sax", "name": "Saxophone", "decoder": "ddsp-sax/decoder.fp16.onnx", "controls": "ddsp-sax/controls.json"}
 * with paths relative to the manifest. Both files are what audioforge.ddsp.export.export_bundle writes:
 * the graph (DecoderStep) takes f0_hz [1, T] (Hz), loudness_db [1, T] (dB) and state [1, 1, gru_units], all
 * float32, T dynamic, and returns the *scaled* controls amplitude [1, T], harmonic_distribution [1, T, H] (harmonics
 * at or above Nyquist removed, summing to one), noise_magnitudes [1, T, B] (linear) and state_out; controls.json
 * gives sr, hop, gru_units, n_harmonics, n_noise_bands and the dataset statistics for auto-adjust.
 * Optional controls.json keys read here: "onnx" (other tensor names, or "frames": a fixed T) and "reverb_ir".
 */

export const DEFAULTS = {
  sr: 16000,
  hop: 64,
  n_harmonics: 60,
  n_noise_bands: 65,
  onnx: {
    inputs: { f0: 'f0_hz', loudness: 'loudness_db', state: 'state' },
    outputs: { amplitude: 'amplitude', distribution: 'harmonic_distribution', noise: 'noise_magnitudes',
      state: 'state_out' },
    frames: null,
  },
};

/** controls.json merged over DEFAULTS. */
export function resolveConfig(controls = {}) {
  const onnx = controls.onnx ?? {};
  const cfg = {
    ...DEFAULTS,
    ...controls,
    onnx: {
      inputs: { ...DEFAULTS.onnx.inputs, ...(onnx.inputs ?? {}) },
      outputs: { ...DEFAULTS.onnx.outputs, ...(onnx.outputs ?? {}) },
      frames: onnx.frames ?? null,
    },
  };
  if (!cfg.state_shape) {
    if (!cfg.gru_units) throw new Error('controls.json needs "state_shape" (or "gru_units") for the decoder state');
    cfg.state_shape = [1, 1, cfg.gru_units];
  }
  return cfg;
}

/** A stateful decoder: run(f0, loudness) on consecutive blocks of frames returns the raw outputs per frame. */
export class Decoder {
  /**
   * @param {object} ort the onnxruntime-web module
   * @param {object} session an ort.InferenceSession
   * @param {object} cfg resolveConfig(controls.json)
   */
  constructor(ort, session, cfg) {
    this.ort = ort;
    this.session = session;
    this.cfg = cfg;
    this.reset();
  }

  /** Load a decoder from its ONNX bytes or URL and its controls.json object. */
  static async create(ort, model, controls, sessionOptions = {}) {
    const cfg = resolveConfig(controls);
    const session = await ort.InferenceSession.create(model, { executionProviders: ['wasm'], ...sessionOptions });
    return new Decoder(ort, session, cfg);
  }

  reset() {
    const size = this.cfg.state_shape.reduce((a, b) => a * b, 1);
    this.state = new Float32Array(size);
  }

  async _run(f0, loudness) {
    const { ort, cfg } = this;
    const t = f0.length;
    const io = cfg.onnx;
    const feeds = {
      [io.inputs.f0]: new ort.Tensor('float32', Float32Array.from(f0), [1, t]),
      [io.inputs.loudness]: new ort.Tensor('float32', Float32Array.from(loudness), [1, t]),
      [io.inputs.state]: new ort.Tensor('float32', this.state, cfg.state_shape),
    };
    const res = await this.session.run(feeds);
    const get = (name) => {
      if (!res[name]) throw new Error(`the decoder has no output "${name}" (outputs: ${Object.keys(res).join(', ')})`);
      return res[name].data;
    };
    return {
      amplitude: get(io.outputs.amplitude),
      distribution: get(io.outputs.distribution),
      noise: get(io.outputs.noise),
      state: Float32Array.from(get(io.outputs.state)),
    };
  }

  /**
   * Decode a block of frames (f0 Hz, loudness dB), carrying the GRU state to the next call.
   * @returns {Promise<{amplitude: Float32Array, distribution: Float32Array, noise: Float32Array}>} per frame,
   *   frame-major (T, T x n_harmonics, T x n_noise_bands)
   */
  async run(f0, loudness) {
    const { cfg } = this;
    const H = cfg.n_harmonics, B = cfg.n_noise_bands;
    const fixed = cfg.onnx.frames;
    const t = f0.length;
    const step = fixed || t;
    const out = { amplitude: new Float32Array(t), distribution: new Float32Array(t * H), noise: new Float32Array(t * B) };
    // a graph with a fixed T runs on slices of T frames, the last one padded by repeating its last frame
    for (let s = 0; s < t; s += step) {
      const n = Math.min(step, t - s);
      const fb = new Float64Array(step), lb = new Float64Array(step);
      for (let i = 0; i < step; i++) { const j = s + Math.min(i, n - 1); fb[i] = f0[j]; lb[i] = loudness[j]; }
      const r = await this._run(fb, lb);
      if (r.amplitude.length !== step || r.distribution.length !== step * H || r.noise.length !== step * B) {
        throw new Error(`decoder output sizes do not match ${step} frames x (1, ${H}, ${B})`);
      }
      out.amplitude.set(r.amplitude.subarray(0, n), s);
      out.distribution.set(r.distribution.subarray(0, n * H), s * H);
      out.noise.set(r.noise.subarray(0, n * B), s * B);
      this.state = r.state;
    }
    return out;
  }
}

/** Fetch the models manifest; returns its entries with URLs resolved against the manifest's URL. */
export async function loadManifest(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`cannot load the models manifest ${url}: HTTP ${res.status}`);
  const data = await res.json();
  const entries = Array.isArray(data) ? data : data.instruments ?? data.models ?? [];
  const base = new URL(url, globalThis.location?.href);
  return entries.map((e) => ({
    ...e,
    name: e.name ?? e.id,
    decoderUrl: new URL(e.decoder, base).href,
    controlsUrl: new URL(e.controls, base).href,
  }));
}

/** Load one manifest entry: its controls.json and its decoder session. */
export async function loadInstrument(ort, entry) {
  const res = await fetch(entry.controlsUrl);
  if (!res.ok) throw new Error(`cannot load ${entry.controlsUrl}: HTTP ${res.status}`);
  const controls = await res.json();
  const decoder = await Decoder.create(ort, entry.decoderUrl, controls);
  return { entry, controls, decoder };
}
