// The page: pick an instrument, record or drop a file, transfer its melody to the instrument, play, download.
//
// Data flow (all in this tab): microphone -> AudioWorklet 'af-recorder' (AudioContext rate) -> main thread ->
// resample to 16 kHz (dsp/resample.js); or a dropped file -> decodeAudioData -> mono -> 16 kHz. Processing
// (dsp/transfer.js): YIN f0 + A-weighted loudness -> auto-adjust to the instrument's statistics -> per block of
// 250 frames (1 s) the ONNX decoder (onnxruntime-web, wasm) -> harmonic + filtered-noise synthesis; each block is
// resampled to the AudioContext rate and queued on the AudioWorklet 'af-player' as soon as it is ready, so
// playback starts after the first block. The finished audio is offered as a 16-bit WAV at 16 kHz.
//
// window.af exposes the state and a small API for scripts and tests (see web/README.md).
import * as ort from 'onnxruntime-web';
import { loadInstrument, loadManifest } from './dsp/decoder.js';
import { Resampler, resample } from './dsp/resample.js';
import { timbreTransfer } from './dsp/transfer.js';
import { encodeWav } from './dsp/wav.js';

const SR = 16000;
const params = new URLSearchParams(location.search);
// The models manifest: a JSON list of {id, name, decoder, controls} (paths relative to it), see dsp/decoder.js.
const MANIFEST_URL = params.get('models') ?? 'models/manifest.json';

ort.env.wasm.wasmPaths = new URL('./node_modules/onnxruntime-web/dist/', location.href).href;
ort.env.wasm.numThreads = globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;

const $ = (id) => document.getElementById(id);
const ui = {
  instrument: $('instrument'), record: $('record'), stop: $('stop'), file: $('file'), drop: $('drop'),
  process: $('process'), play: $('play'), download: $('download'), status: $('status'), details: $('details'),
  inputInfo: $('input-info'), auto: $('auto'), pitch: $('pitch'), loud: $('loud'),
};

const af = {
  status: 'loading', error: null, instruments: [], instrument: null, input: null, result: null, busy: false,
};
window.af = af;

let ctx = null;
let player = null;
let recorder = null;

function setStatus(text, { error = false } = {}) {
  af.status = text;
  ui.status.textContent = text;
  ui.status.className = error ? 'error' : '';
}

function fail(err) {
  af.error = String(err?.message ?? err);
  setStatus(af.error, { error: true });
  console.error(err);
}

function refreshButtons() {
  const ready = !!af.instrument && !af.busy;
  ui.process.disabled = !(ready && af.input);
  ui.play.disabled = !(ready && af.result);
  ui.record.disabled = af.busy || !!recorder;
  ui.stop.disabled = !recorder;
}

async function audioContext() {
  if (!ctx) {
    ctx = new AudioContext();
    await ctx.audioWorklet.addModule(new URL('./worklet.js', import.meta.url));
  }
  if (ctx.state === 'suspended') await ctx.resume();
  return ctx;
}

function toBase64(buf) {
  const bytes = new Uint8Array(buf);
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

// ---- instruments

async function selectInstrument(id) {
  const entry = af.instruments.find((e) => e.id === id);
  if (!entry) throw new Error(`no instrument "${id}" in the manifest`);
  af.instrument = null;
  refreshButtons();
  setStatus(`loading ${entry.name}…`);
  af.instrument = await loadInstrument(ort, entry);
  ui.instrument.value = id;
  setStatus(`${entry.name} ready`);
  refreshButtons();
}

async function init() {
  try {
    af.instruments = await loadManifest(new URL(MANIFEST_URL, location.href).href);
    if (!af.instruments.length) throw new Error(`the models manifest ${MANIFEST_URL} lists no instrument`);
    ui.instrument.replaceChildren(...af.instruments.map((e) => new Option(e.name, e.id)));
    ui.instrument.disabled = false;
    ui.instrument.onchange = () => selectInstrument(ui.instrument.value).catch(fail);
    await selectInstrument(af.instruments[0].id);
    af.ready = true;
  } catch (err) {
    fail(err);
  }
}

// ---- input

function setInput(samples, sr, label) {
  const y = sr === SR ? Float32Array.from(samples) : Float32Array.from(resample(samples, sr, SR));
  af.input = { samples: y, sr: SR, seconds: y.length / SR, source: label };
  af.result = null;
  ui.download.hidden = true;
  ui.inputInfo.textContent = `${label}: ${(y.length / SR).toFixed(2)} s`;
  setStatus('input ready');
  refreshButtons();
}

async function startRecording() {
  const c = await audioContext();
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, channelCount: 1 },
  });
  const source = c.createMediaStreamSource(stream);
  const node = new AudioWorkletNode(c, 'af-recorder', { numberOfOutputs: 1, outputChannelCount: [1] });
  const chunks = [];
  const done = new Promise((resolve) => {
    node.port.onmessage = (e) => {
      if (e.data instanceof Float32Array) chunks.push(e.data);
      else if (e.data?.type === 'stopped') resolve();
    };
  });
  source.connect(node);
  node.connect(c.destination); // keeps the node pulled; its output is silent
  recorder = { stream, source, node, chunks, done, rate: c.sampleRate };
  setStatus('recording…');
  refreshButtons();
}

async function stopRecording() {
  const r = recorder;
  if (!r) return;
  r.node.port.postMessage({ type: 'stop' });
  await r.done;
  r.source.disconnect();
  r.node.disconnect();
  r.stream.getTracks().forEach((t) => t.stop());
  recorder = null;
  const n = r.chunks.reduce((a, c) => a + c.length, 0);
  const all = new Float32Array(n);
  let o = 0;
  for (const c of r.chunks) { all.set(c, o); o += c.length; }
  setInput(all, r.rate, 'recording');
}

async function loadFile(file) {
  const c = await audioContext();
  const buf = await c.decodeAudioData(await file.arrayBuffer());
  const mono = new Float32Array(buf.length);
  for (let ch = 0; ch < buf.numberOfChannels; ch++) {
    const d = buf.getChannelData(ch);
    for (let i = 0; i < d.length; i++) mono[i] += d[i] / buf.numberOfChannels;
  }
  setInput(mono, buf.sampleRate, file.name);
}

// ---- processing and playback

function stopPlayback() {
  if (player) {
    player.port.postMessage({ type: 'stop' });
    player.disconnect();
    player = null;
  }
}

/** A streaming player: push(16 kHz block), end(); resolves `drained` when everything was played. */
async function newPlayer() {
  const c = await audioContext();
  stopPlayback();
  const node = new AudioWorkletNode(c, 'af-player', { numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1] });
  node.connect(c.destination);
  player = node;
  const rs = new Resampler(SR, c.sampleRate);
  const drained = new Promise((resolve) => {
    node.port.onmessage = (e) => { if (e.data.type === 'drained') resolve(e.data.frames); };
  });
  const send = (x) => { if (x.length) node.port.postMessage({ type: 'chunk', data: Float32Array.from(x) }); };
  return {
    push: (block) => send(rs.push(block)),
    end: () => { send(rs.flush()); node.port.postMessage({ type: 'end' }); },
    drained,
  };
}

function options() {
  return { autoAdjust: ui.auto.checked, pitchShift: Number(ui.pitch.value) || 0,
    loudnessShift: Number(ui.loud.value) || 0 };
}

/**
 * Transfer the current input with the current instrument; with play=true the blocks are played as they come.
 * @returns {Promise<object>} a summary (timings, RTF, octave shift)
 */
async function processInput({ play = true, ...opts } = {}) {
  if (!af.instrument || !af.input) throw new Error('pick an instrument and record or drop a file first');
  af.busy = true;
  refreshButtons();
  setStatus('processing…');
  try {
    const out = play ? await newPlayer() : null;
    const res = await timbreTransfer(af.input.samples, af.instrument, { ...options(), ...opts },
      out ? (block) => out.push(block) : null);
    out?.end();
    const wav = encodeWav(res.audio, res.sr);
    if (ui.download.href) URL.revokeObjectURL(ui.download.href);
    ui.download.href = URL.createObjectURL(new Blob([wav], { type: 'audio/wav' }));
    ui.download.download = `${af.instrument.entry.id}-transfer.wav`;
    ui.download.hidden = false;
    af.result = { audio: res.audio, sr: res.sr, gain: res.gain, octave: res.octave, timings: res.timings,
      rtf: res.rtf, wav };
    const t = res.timings;
    ui.details.textContent = `${t.seconds.toFixed(2)} s of audio in ${t.total_ms.toFixed(0)} ms (RTF ${res.rtf.toFixed(3)}): `
      + `analysis ${t.analysis_ms.toFixed(0)} ms, decoder ${t.decode_ms.toFixed(0)} ms, synthesis `
      + `${t.synth_ms.toFixed(0)} ms; octave shift ${res.octave}`;
    setStatus('done');
    return summary();
  } finally {
    af.busy = false;
    refreshButtons();
  }
}

function summary() {
  const r = af.result;
  return r && { seconds: r.audio.length / r.sr, sr: r.sr, gain: r.gain, octave: r.octave, rtf: r.rtf,
    timings: r.timings };
}

async function playResult() {
  const out = await newPlayer();
  out.push(af.result.audio);
  out.end();
  return out.drained;
}

// ---- API for scripts and tests

Object.assign(af, {
  selectInstrument,
  setInput,
  process: processInput,
  play: playResult,
  summary,
  resultWavBase64: () => (af.result ? toBase64(af.result.wav) : null),
  inputWavBase64: () => (af.input ? toBase64(encodeWav(af.input.samples, SR)) : null),
  /** Time the processing (no playback) of `seconds` of a synthetic vibrato tone; returns the summary. */
  async benchmark(seconds = 10) {
    const n = Math.round(seconds * SR);
    const y = new Float32Array(n);
    let ph = 0;
    for (let i = 0; i < n; i++) {
      const f = 330 * 2 ** (0.5 * Math.sin((2 * Math.PI * 5 * i) / SR) / 12);
      ph += (2 * Math.PI * f) / SR;
      y[i] = 0.3 * Math.sin(ph) + 0.1 * Math.sin(2 * ph);
    }
    setInput(y, SR, 'benchmark tone');
    return processInput({ play: false });
  },
});

// ---- wiring

ui.record.onclick = () => startRecording().catch(fail);
ui.stop.onclick = () => stopRecording().catch(fail);
ui.process.onclick = () => processInput().catch(fail);
ui.play.onclick = () => playResult().catch(fail);
ui.file.onchange = () => ui.file.files[0] && loadFile(ui.file.files[0]).catch(fail);
ui.drop.ondragover = (e) => { e.preventDefault(); ui.drop.classList.add('over'); };
ui.drop.ondragleave = () => ui.drop.classList.remove('over');
ui.drop.ondrop = (e) => {
  e.preventDefault();
  ui.drop.classList.remove('over');
  const f = e.dataTransfer.files[0];
  if (f) loadFile(f).catch(fail);
};

init();
