/**
 * In-place iterative radix-2 complex FFT on Float64Array pairs, with cached twiddle and bit-reversal tables.
 *
 * Everything in web/dsp computes in float64 (JS numbers), so results match the Python reference (which runs its
 * analysis in float64) to rounding.
 */

const tables = new Map();

function getTables(n) {
  let t = tables.get(n);
  if (t) return t;
  if (n < 2 || (n & (n - 1)) !== 0) throw new RangeError(`FFT size must be a power of two >= 2, got ${n}`);
  const rev = new Uint32Array(n);
  const bits = Math.log2(n);
  for (let i = 0; i < n; i++) {
    let r = 0;
    for (let b = 0, x = i; b < bits; b++, x >>= 1) r = (r << 1) | (x & 1);
    rev[i] = r;
  }
  const cos = new Float64Array(n / 2);
  const sin = new Float64Array(n / 2);
  for (let k = 0; k < n / 2; k++) {
    cos[k] = Math.cos((2 * Math.PI * k) / n);
    sin[k] = Math.sin((2 * Math.PI * k) / n);
  }
  t = { rev, cos, sin };
  tables.set(n, t);
  return t;
}

/**
 * Complex FFT of (re, im), in place. inverse=true computes the unnormalised inverse (divide by n yourself).
 * @param {Float64Array} re
 * @param {Float64Array} im
 * @param {boolean} [inverse=false]
 */
export function fft(re, im, inverse = false) {
  const n = re.length;
  const { rev, cos, sin } = getTables(n);
  for (let i = 0; i < n; i++) {
    const j = rev[i];
    if (j > i) {
      let t = re[i]; re[i] = re[j]; re[j] = t;
      t = im[i]; im[i] = im[j]; im[j] = t;
    }
  }
  const sgn = inverse ? 1 : -1;
  for (let size = 2; size <= n; size <<= 1) {
    const half = size >> 1;
    const step = n / size;
    for (let start = 0; start < n; start += size) {
      for (let k = 0, tw = 0; k < half; k++, tw += step) {
        const wr = cos[tw];
        const wi = sgn * sin[tw];
        const a = start + k;
        const b = a + half;
        const xr = re[b] * wr - im[b] * wi;
        const xi = re[b] * wi + im[b] * wr;
        re[b] = re[a] - xr; im[b] = im[a] - xi;
        re[a] += xr; im[a] += xi;
      }
    }
  }
}

/**
 * Power spectrum |X_k|^2, k = 0..n/2, of a real signal x zero-padded (or cut) to n points.
 * @param {ArrayLike<number>} x
 * @param {number} n power of two
 * @param {Float64Array} [out] length n/2 + 1
 */
export function powerSpectrum(x, n, out = new Float64Array(n / 2 + 1)) {
  const re = new Float64Array(n);
  const im = new Float64Array(n);
  const m = Math.min(n, x.length);
  for (let i = 0; i < m; i++) re[i] = x[i];
  fft(re, im);
  for (let k = 0; k <= n / 2; k++) out[k] = re[k] * re[k] + im[k] * im[k];
  return out;
}
