// AudioWorklet processors of the page (loaded with audioWorklet.addModule('worklet.js')).
//
// af-recorder: passes the microphone's samples (first channel, AudioContext rate) to the main thread in blocks of
//              `blockSize` frames (default 2048), silent output.
// af-player:   plays Float32Array chunks posted to its port, in order, at the AudioContext rate; posts
//              {type: 'played', frames} every ~100 ms and {type: 'drained'} when its queue runs empty after `end`.
//              Messages in: {type: 'chunk', data}, {type: 'end'} (no more chunks), {type: 'stop'} (drop everything).

class Recorder extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.blockSize = options?.processorOptions?.blockSize ?? 2048;
    this.buf = new Float32Array(this.blockSize);
    this.fill = 0;
    this.active = true;
    this.port.onmessage = (e) => {
      if (e.data?.type === 'stop') {
        if (this.fill > 0) this.port.postMessage(this.buf.slice(0, this.fill));
        this.port.postMessage({ type: 'stopped' });
        this.active = false;
      }
    };
  }

  process(inputs) {
    if (!this.active) return false;
    const ch = inputs[0]?.[0];
    if (ch) {
      let i = 0;
      while (i < ch.length) {
        const n = Math.min(ch.length - i, this.blockSize - this.fill);
        this.buf.set(ch.subarray(i, i + n), this.fill);
        this.fill += n;
        i += n;
        if (this.fill === this.blockSize) {
          this.port.postMessage(this.buf);
          this.buf = new Float32Array(this.blockSize);
          this.fill = 0;
        }
      }
    }
    return true;
  }
}

class Player extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = [];
    this.offset = 0;
    this.ended = false;
    this.played = 0;
    this.lastReport = 0;
    this.drained = false;
    this.port.onmessage = (e) => {
      const m = e.data;
      if (m.type === 'chunk') { this.queue.push(m.data); this.drained = false; }
      else if (m.type === 'end') this.ended = true;
      else if (m.type === 'stop') { this.queue = []; this.offset = 0; this.ended = true; }
    };
  }

  process(_inputs, outputs) {
    const out = outputs[0];
    const n = out[0].length;
    let w = 0;
    while (w < n && this.queue.length) {
      const head = this.queue[0];
      const k = Math.min(n - w, head.length - this.offset);
      for (let c = 0; c < out.length; c++) out[c].set(head.subarray(this.offset, this.offset + k), w);
      w += k;
      this.offset += k;
      if (this.offset >= head.length) { this.queue.shift(); this.offset = 0; }
    }
    for (let c = 0; c < out.length; c++) out[c].fill(0, w);
    this.played += w;
    if (this.played - this.lastReport >= sampleRate / 10) {
      this.port.postMessage({ type: 'played', frames: this.played });
      this.lastReport = this.played;
    }
    if (this.ended && !this.queue.length && !this.drained) {
      this.drained = true;
      this.port.postMessage({ type: 'drained', frames: this.played });
    }
    return true;
  }
}

registerProcessor('af-recorder', Recorder);
registerProcessor('af-player', Player);
