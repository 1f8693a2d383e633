/** RIFF/WAVE encoding (16-bit PCM or 32-bit float, mono) and decoding (PCM 8/16/24/32, float 32/64). */

/**
 * Mono samples -> a WAV file.
 * @param {ArrayLike<number>} samples floats in [-1, 1] (clipped for PCM)
 * @param {number} sr sample rate
 * @param {{float?: boolean}} [opts] float: 32-bit IEEE float instead of 16-bit PCM
 * @returns {ArrayBuffer}
 */
export function encodeWav(samples, sr, { float = false } = {}) {
  const bytes = float ? 4 : 2;
  const n = samples.length;
  const buf = new ArrayBuffer(44 + n * bytes);
  const v = new DataView(buf);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  str(0, 'RIFF'); v.setUint32(4, 36 + n * bytes, true); str(8, 'WAVE');
  str(12, 'fmt '); v.setUint32(16, 16, true); v.setUint16(20, float ? 3 : 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, sr, true); v.setUint32(28, sr * bytes, true); v.setUint16(32, bytes, true);
  v.setUint16(34, 8 * bytes, true);
  str(36, 'data'); v.setUint32(40, n * bytes, true);
  for (let i = 0; i < n; i++) {
    const x = samples[i];
    if (float) v.setFloat32(44 + 4 * i, x, true);
    else v.setInt16(44 + 2 * i, Math.round(Math.max(-1, Math.min(1, x)) * 32767), true);
  }
  return buf;
}

/**
 * A WAV file -> {sr, channels: Float32Array[]}.
 * @param {ArrayBuffer} buf
 */
export function decodeWav(buf) {
  const v = new DataView(buf);
  const tag = (o) => String.fromCharCode(v.getUint8(o), v.getUint8(o + 1), v.getUint8(o + 2), v.getUint8(o + 3));
  if (buf.byteLength < 12 || tag(0) !== 'RIFF' || tag(8) !== 'WAVE') throw new Error('not a RIFF/WAVE file');
  let fmt = null;
  let o = 12;
  while (o + 8 <= buf.byteLength) {
    const id = tag(o);
    const size = v.getUint32(o + 4, true);
    const body = o + 8;
    if (id === 'fmt ') {
      let format = v.getUint16(body, true);
      if (format === 0xfffe && size >= 26) format = v.getUint16(body + 24, true); // WAVE_FORMAT_EXTENSIBLE
      fmt = { format, nch: v.getUint16(body + 2, true), sr: v.getUint32(body + 4, true), bits: v.getUint16(body + 14, true) };
    } else if (id === 'data') {
      if (!fmt) throw new Error('WAV data chunk before its fmt chunk');
      const { format, nch, sr, bits } = fmt;
      const bps = bits / 8;
      const len = Math.min(size, buf.byteLength - body);
      const n = Math.floor(len / (bps * nch));
      const channels = Array.from({ length: nch }, () => new Float32Array(n));
      for (let i = 0; i < n; i++) {
        for (let c = 0; c < nch; c++) {
          const p = body + (i * nch + c) * bps;
          let x;
          if (format === 3) x = bits === 64 ? v.getFloat64(p, true) : v.getFloat32(p, true);
          else if (format === 1 && bits === 16) x = v.getInt16(p, true) / 32768;
          else if (format === 1 && bits === 24) x = ((v.getInt8(p + 2) << 16) | (v.getUint8(p + 1) << 8) | v.getUint8(p)) / 8388608;
          else if (format === 1 && bits === 32) x = v.getInt32(p, true) / 2147483648;
          else if (format === 1 && bits === 8) x = (v.getUint8(p) - 128) / 128;
          else throw new Error(`unsupported WAV encoding: format ${format}, ${bits} bits`);
          channels[c][i] = x;
        }
      }
      return { sr, channels };
    }
    o = body + size + (size & 1);
  }
  throw new Error('WAV file has no data chunk');
}
