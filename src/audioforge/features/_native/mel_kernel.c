/*
 * audioforge native mel kernel: power mel spectrogram of float32 frames, 16 frames at a time in the lanes of
 * AVX-512 registers (structure of arrays), so that every FFT butterfly works on 16 frames with no shuffles.
 *
 * Per group of 16 frames:
 *   1. load:   16 x 16 blocks of (frame samples x window) transposed in registers into the SoA buffer, the even
 *              samples as real and the odd ones as imaginary parts (a real FFT of N as a complex FFT of N / 2);
 *   2. FFT:    Stockham autosort, mixed radix (4, 2, 3, 5 butterflies, any other prime as a direct DFT);
 *   3. split:  X[k] = (Z[k] + conj Z[M-k]) / 2 - i e^{-2 pi i k / N} (Z[k] - conj Z[M-k]) / 2, |X[k]|^2;
 *   4. mel:    CSR rows of the filterbank, written as (n_mels, n_frames) rows, librosa's layout.
 *
 * Built on first use by audioforge.features.native with the machine's compiler (-O3 -march=native); needs AVX-512F.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef __AVX512F__
#error "the audioforge mel kernel needs AVX-512F"
#endif

#define W 16
#define MAX_GENERIC_RADIX 64
typedef float vf __attribute__((vector_size(64)));
typedef struct { vf re, im; } vc;

static inline vc cmul_s(vc a, float br, float bi) {
    vc r;
    r.re = a.re * br - a.im * bi;
    r.im = a.re * bi + a.im * br;
    return r;
}

static inline void dft2(vc* v) {
    vc a = v[0], b = v[1];
    v[0].re = a.re + b.re; v[0].im = a.im + b.im;
    v[1].re = a.re - b.re; v[1].im = a.im - b.im;
}

static inline void dft3(vc* v) {
    const float c1 = -0.5f, s1 = 0.86602540378443864676f;
    vc a = v[0], b = v[1], c = v[2];
    vf tr = b.re + c.re, ti = b.im + c.im, dr = b.re - c.re, di = b.im - c.im;
    vf mr = a.re + c1 * tr, mi = a.im + c1 * ti;
    v[0].re = a.re + tr; v[0].im = a.im + ti;
    v[1].re = mr + s1 * di; v[1].im = mi - s1 * dr;
    v[2].re = mr - s1 * di; v[2].im = mi + s1 * dr;
}

static inline void dft4(vc* v) {
    vc a = v[0], b = v[1], c = v[2], d = v[3];
    vf t0r = a.re + c.re, t0i = a.im + c.im, t1r = a.re - c.re, t1i = a.im - c.im;
    vf t2r = b.re + d.re, t2i = b.im + d.im, t3r = b.re - d.re, t3i = b.im - d.im;
    v[0].re = t0r + t2r; v[0].im = t0i + t2i;
    v[2].re = t0r - t2r; v[2].im = t0i - t2i;
    v[1].re = t1r + t3i; v[1].im = t1i - t3r;
    v[3].re = t1r - t3i; v[3].im = t1i + t3r;
}

static inline void dft5(vc* v) {
    const float c1 = 0.30901699437494742410f, c2 = -0.80901699437494742410f;
    const float s1 = 0.95105651629515357212f, s2 = 0.58778525229247312917f;
    vc a = v[0];
    vf t1r = v[1].re + v[4].re, t1i = v[1].im + v[4].im, t2r = v[2].re + v[3].re, t2i = v[2].im + v[3].im;
    vf d1r = v[1].re - v[4].re, d1i = v[1].im - v[4].im, d2r = v[2].re - v[3].re, d2i = v[2].im - v[3].im;
    vf m1r = a.re + c1 * t1r + c2 * t2r, m1i = a.im + c1 * t1i + c2 * t2i;
    vf m2r = a.re + c2 * t1r + c1 * t2r, m2i = a.im + c2 * t1i + c1 * t2i;
    vf n1r = s1 * d1r + s2 * d2r, n1i = s1 * d1i + s2 * d2i;
    vf n2r = s2 * d1r - s1 * d2r, n2i = s2 * d1i - s1 * d2i;
    v[0].re = a.re + t1r + t2r; v[0].im = a.im + t1i + t2i;
    v[1].re = m1r + n1i; v[1].im = m1i - n1r;
    v[4].re = m1r - n1i; v[4].im = m1i + n1r;
    v[2].re = m2r + n2i; v[2].im = m2i - n2r;
    v[3].re = m2r - n2i; v[3].im = m2i + n2r;
}

/* One Stockham stage of radix R over Ns-point sub-transforms; tw: (Ns, R-1) complex e^{-2 pi i r k / (Ns R)}. */
#define STAGE(R, DFT)                                                                                  \
    static void stage##R(const vc* restrict in, vc* restrict o, int M, int Ns, const float* tw) {      \
        int L = M / R;                                                                                 \
        for (int jb = 0; jb < L / Ns; jb++)                                                            \
            for (int k = 0; k < Ns; k++) {                                                             \
                int j = jb * Ns + k;                                                                   \
                vc v[R];                                                                               \
                for (int r = 0; r < R; r++) v[r] = in[j + r * L];                                      \
                if (Ns > 1)                                                                            \
                    for (int r = 1; r < R; r++) {                                                      \
                        const float* c = tw + 2 * (k * (R - 1) + (r - 1));                             \
                        v[r] = cmul_s(v[r], c[0], c[1]);                                               \
                    }                                                                                  \
                DFT(v);                                                                                \
                int base = jb * Ns * R + k;                                                            \
                for (int r = 0; r < R; r++) o[base + r * Ns] = v[r];                                   \
            }                                                                                          \
    }
STAGE(2, dft2)
STAGE(3, dft3)
STAGE(4, dft4)
STAGE(5, dft5)

/* Any other radix: a direct DFT; roots rc/rs = cos/sin(2 pi q / R). */
static void stage_generic(const vc* restrict in, vc* restrict o, int M, int R, int Ns, const float* tw,
                          const float* rc, const float* rs) {
    int L = M / R;
    vc v[MAX_GENERIC_RADIX], y[MAX_GENERIC_RADIX];
    for (int jb = 0; jb < L / Ns; jb++)
        for (int k = 0; k < Ns; k++) {
            int j = jb * Ns + k;
            for (int r = 0; r < R; r++) v[r] = in[j + r * L];
            if (Ns > 1)
                for (int r = 1; r < R; r++) {
                    const float* c = tw + 2 * (k * (R - 1) + (r - 1));
                    v[r] = cmul_s(v[r], c[0], c[1]);
                }
            for (int q = 0; q < R; q++) {
                vf ar = v[0].re, ai = v[0].im;
                for (int r = 1; r < R; r++) {
                    int e = (r * q) % R;
                    float c = rc[e], s = -rs[e];
                    ar += v[r].re * c - v[r].im * s;
                    ai += v[r].re * s + v[r].im * c;
                }
                y[q].re = ar;
                y[q].im = ai;
            }
            int base = jb * Ns * R + k;
            for (int r = 0; r < R; r++) o[base + r * Ns] = y[r];
        }
}

static inline void transpose16(__m512 r[16]) {
    __m512 t[16], u[16], v[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) {
        __m512d a0 = _mm512_castps_pd(t[4 * g]), a1 = _mm512_castps_pd(t[4 * g + 1]);
        __m512d b0 = _mm512_castps_pd(t[4 * g + 2]), b1 = _mm512_castps_pd(t[4 * g + 3]);
        u[4 * g + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, b0));
        u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, b0));
        u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, b1));
        u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, b1));
    }
    for (int q = 0; q < 4; q++) {
        v[4 * q + 0] = _mm512_shuffle_f32x4(u[q], u[4 + q], 0x88);
        v[4 * q + 1] = _mm512_shuffle_f32x4(u[q], u[4 + q], 0xdd);
        v[4 * q + 2] = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0x88);
        v[4 * q + 3] = _mm512_shuffle_f32x4(u[8 + q], u[12 + q], 0xdd);
    }
    for (int q = 0; q < 4; q++) {
        r[q] = _mm512_shuffle_f32x4(v[4 * q + 0], v[4 * q + 2], 0x88);
        r[q + 8] = _mm512_shuffle_f32x4(v[4 * q + 0], v[4 * q + 2], 0xdd);
        r[q + 4] = _mm512_shuffle_f32x4(v[4 * q + 1], v[4 * q + 3], 0x88);
        r[q + 12] = _mm512_shuffle_f32x4(v[4 * q + 1], v[4 * q + 3], 0xdd);
    }
}

/*
 * x: padded signal; frame t starts at x + t * hop and has N (even) samples. radices: the factors of M = N / 2 in
 * stage order; tw: the stages' twiddles, concatenated; roots: per stage R cosines then R sines; post: (M + 1)
 * complex e^{-2 pi i k / N}; window: N; mel: CSR (indptr n_mels + 1, indices, data) over the N / 2 + 1 bins.
 * out: (n_mels, n_frames). Returns 0, or -1 when the work buffer cannot be allocated.
 */
int af_mel_power(const float* x, int64_t n_frames, int64_t hop, int N, int n_stages, const int32_t* radices,
                 const float* tw, const float* roots, const float* post, const float* window, int n_mels,
                 const int32_t* indptr, const int32_t* indices, const float* data, float* out) {
    int M = N / 2;
    size_t bytes = (size_t)(2 * M) * sizeof(vc) + (size_t)(M + 1) * sizeof(vf);
    void* work = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!work) return -1;
    vc* a = (vc*)work;
    vc* b = a + M;
    vf* P = (vf*)(b + M);
    float* af = (float*)a;
    int n16 = N - N % 16;
    for (int64_t t0 = 0; t0 < n_frames; t0 += W) {
        int lanes = n_frames - t0 < W ? (int)(n_frames - t0) : W;
        int idx[W];
        const float* rows[W];
        for (int l = 0; l < W; l++) {
            idx[l] = (l < lanes ? l : lanes - 1) * (int)hop;
            rows[l] = x + (t0 + (l < lanes ? l : lanes - 1)) * hop;
        }
        for (int s0 = 0; s0 < n16; s0 += 16) {
            __m512 r[16];
            __m512 wv = _mm512_loadu_ps(window + s0);
            for (int l = 0; l < 16; l++) r[l] = _mm512_mul_ps(_mm512_loadu_ps(rows[l] + s0), wv);
            transpose16(r);
            for (int q = 0; q < 16; q++) {
                int n = s0 + q;
                _mm512_store_ps(af + 32 * (n >> 1) + 16 * (n & 1), r[q]);
            }
        }
        if (n16 < N) {
            __m512i vidx = _mm512_loadu_si512(idx);
            const float* base = x + t0 * hop;
            for (int n = n16; n < N; n++) {
                __m512 e = _mm512_i32gather_ps(vidx, base + n, 4);
                _mm512_store_ps(af + 32 * (n >> 1) + 16 * (n & 1), _mm512_mul_ps(e, _mm512_set1_ps(window[n])));
            }
        }
        vc* in = a;
        vc* o = b;
        int Ns = 1;
        const float* twp = tw;
        const float* rp = roots;
        for (int s = 0; s < n_stages; s++) {
            int R = radices[s];
            if (R == 4) stage4(in, o, M, Ns, twp);
            else if (R == 2) stage2(in, o, M, Ns, twp);
            else if (R == 5) stage5(in, o, M, Ns, twp);
            else if (R == 3) stage3(in, o, M, Ns, twp);
            else stage_generic(in, o, M, R, Ns, twp, rp, rp + R);
            twp += 2 * Ns * (R - 1);
            rp += 2 * R;
            Ns *= R;
            vc* sw = in;
            in = o;
            o = sw;
        }
        for (int k = 0; k <= M; k++) {
            vc A = in[k == M ? 0 : k], B = in[k == 0 ? 0 : M - k];
            vf er = (A.re + B.re) * 0.5f, ei = (A.im - B.im) * 0.5f;
            vf dr = (A.re - B.re) * 0.5f, di = (A.im + B.im) * 0.5f;
            float wr = post[2 * k], wi = post[2 * k + 1];
            vf xr = er + di * wr + dr * wi;
            vf xi = ei + di * wi - dr * wr;
            P[k] = xr * xr + xi * xi;
        }
        for (int r = 0; r < n_mels; r++) {
            vf acc = {0};
            for (int q = indptr[r]; q < indptr[r + 1]; q++) acc += data[q] * P[indices[q]];
            float* dst = out + (int64_t)r * n_frames + t0;
            if (lanes == W) memcpy(dst, &acc, sizeof(acc));
            else for (int l = 0; l < lanes; l++) dst[l] = acc[l];
        }
    }
    free(work);
    return 0;
}
