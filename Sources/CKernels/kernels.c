#include "ckernels.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

// One clone per ISA level, picked by the CPU features at load time. fma implies AVX2-class
// vector units; the baseline clone uses plain multiply-adds (the compiler contracts where it can).
#define CLONES __attribute__((target_clones("avx512f", "fma", "default")))

static inline float bits_to_float(int32_t i) { float f; memcpy(&f, &i, 4); return f; }

// Reductions run in LANES independent partial sums (so that they vectorize without reassociating
// floating-point math), added in lane order, then the tail.
#define LANES 16

static inline float lane_total(const float *acc) {
    float s = 0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s;
}

static inline float lane_sum(const float *x, ptrdiff_t n) {
    ptrdiff_t nv = n / LANES * LANES;
    float acc[LANES] = {0};
    for (ptrdiff_t i = 0; i < nv; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += x[i + l];
    float s = lane_total(acc);
    for (ptrdiff_t i = nv; i < n; i++) s += x[i];
    return s;
}

// Cephes-style expf: range reduction by ln 2 (split in two constants), degree-6 polynomial.
static inline float exp_poly(float x) {
    x = x < -87.3f ? -87.3f : (x > 88.3f ? 88.3f : x);
    float n = __builtin_rintf(x * 1.44269504088896341f);
    float r = (n * -0.693359375f + x);
    r = (n * 2.12194440e-4f + r);
    float p = 1.9875691500e-4f;
    p = (p * r + 1.3981999507e-3f);
    p = (p * r + 8.3334519073e-3f);
    p = (p * r + 4.1665795894e-2f);
    p = (p * r + 1.6666665459e-1f);
    p = (p * r + 5.0000001201e-1f);
    p = (p * r * r + r) + 1.0f;
    return p * bits_to_float(((int32_t)n + 127) << 23);
}

// tanh(x) = sign(x) (1 - 2 / (exp(2|x|) + 1)); below |x| < 0.004 the odd Taylor term is exact
// to float precision and avoids cancellation.
static inline float tanh_poly(float x) {
    float a = x < 0 ? -x : x;
    float e = exp_poly(2.0f * a);
    float t = 1.0f - 2.0f / (e + 1.0f);
    float small = a * (1.0f - a * a * (1.0f / 3.0f));
    t = a < 0.004f ? small : t;
    return x < 0 ? -t : t;
}

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
static inline float erf_poly(float x) {
    float a = x < 0 ? -x : x;
    float t = 1.0f / (0.3275911f * a + 1.0f);
    float p = 1.061405429f;
    p = (p * t + -1.453152027f);
    p = (p * t + 1.421413741f);
    p = (p * t + -0.284496736f);
    p = (p * t + 0.254829592f);
    float y = 1.0f - p * t * exp_poly(-a * a);
    return x < 0 ? -y : y;
}

CLONES void ck_exp(const float *x, float *y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) y[i] = exp_poly(x[i]);
}

CLONES void ck_tanh(const float *x, float *y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) y[i] = tanh_poly(x[i]);
}

CLONES void ck_sigmoid(const float *x, float *y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) y[i] = 1.0f / (1.0f + exp_poly(-x[i]));
}

CLONES void ck_silu(const float *x, float *y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + exp_poly(-x[i]));
}

CLONES void ck_silu_grad(const float *x, const float *g, float *dx, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + exp_poly(-x[i]));
        dx[i] = g[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

#define SQRT_2_OVER_PI 0.7978845608028654f
#define GELU_C 0.044715f

CLONES void ck_gelu_tanh(const float *x, float *y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float v = x[i];
        float u = SQRT_2_OVER_PI * (GELU_C * v * v * v + v);
        y[i] = 0.5f * v * (1.0f + tanh_poly(u));
    }
}

CLONES void ck_gelu_tanh_grad(const float *x, const float *g, float *dx, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float v = x[i];
        float u = SQRT_2_OVER_PI * (GELU_C * v * v * v + v);
        float t = tanh_poly(u);
        float d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * SQRT_2_OVER_PI * (1.0f + 3.0f * GELU_C * v * v);
        dx[i] = g[i] * d;
    }
}

CLONES void ck_gelu_erf(const float *x, float *y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + erf_poly(v * 0.7071067811865476f));
    }
}

CLONES void ck_gelu_erf_grad(const float *x, const float *g, float *dx, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + erf_poly(v * 0.7071067811865476f));
        float pdf = exp_poly(-0.5f * v * v) * 0.3989422804014327f;
        dx[i] = g[i] * (cdf + v * pdf);
    }
}

// Max and sum in lanes, the exponentials in their own loop.
CLONES void ck_softmax_row(const float *x, float *y, ptrdiff_t n) {
    ptrdiff_t nv = n / LANES * LANES;
    float lm[LANES];
    for (int l = 0; l < LANES; l++) lm[l] = -INFINITY;
    for (ptrdiff_t i = 0; i < nv; i += LANES)
        for (int l = 0; l < LANES; l++) lm[l] = x[i + l] > lm[l] ? x[i + l] : lm[l];
    float m = -INFINITY;
    for (int l = 0; l < LANES; l++) m = lm[l] > m ? lm[l] : m;
    for (ptrdiff_t i = nv; i < n; i++) m = x[i] > m ? x[i] : m;
    for (ptrdiff_t i = 0; i < n; i++) y[i] = exp_poly(x[i] - m);
    float inv = 1.0f / lane_sum(y, n);
    for (ptrdiff_t i = 0; i < n; i++) y[i] *= inv;
}

CLONES void ck_bias_gelu_tanh_rows(float *y, const float *bias, ptrdiff_t rows, ptrdiff_t width) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        float *row = y + r * width;
        for (ptrdiff_t i = 0; i < width; i++) {
            float v = row[i] + bias[i];
            float u = SQRT_2_OVER_PI * (GELU_C * v * v * v + v);
            row[i] = 0.5f * v * (1.0f + tanh_poly(u));
        }
    }
}

// ---- Reductions and fused updates of the training step ----

CLONES double ck_sum_squares(const float *x, ptrdiff_t n) {
    // Float partial sums over blocks of 1024 (16 lanes, so the loop vectorizes), added in double.
    double total = 0;
    ptrdiff_t i = 0;
    while (n - i >= LANES) {
        float acc[LANES] = {0};
        ptrdiff_t end = i + 1024 < n ? i + 1024 : n;
        end = i + (end - i) / LANES * LANES;
        for (; i < end; i += LANES)
            for (int l = 0; l < LANES; l++) acc[l] += x[i + l] * x[i + l];
        for (int l = 0; l < LANES; l++) total += acc[l];
    }
    for (; i < n; i++) total += (double)x[i] * x[i];
    return total;
}

CLONES void ck_add_rows(const float *x, ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ld, float *acc) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *row = x + r * ld;
        for (ptrdiff_t j = 0; j < n; j++) acc[j] += row[j];
    }
}

CLONES void ck_add_rows_product(const float *a, const float *b, ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ld,
                                float *acc) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *ra = a + r * ld, *rb = b + r * ld;
        for (ptrdiff_t j = 0; j < n; j++) acc[j] += ra[j] * rb[j];
    }
}

CLONES void ck_adamw(float *p, const float *g, float *m, float *v, ptrdiff_t n, float gscale, float b1,
                     float b2, float eps, float decay, float step_size, float bc2_sqrt) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        float pi = p[i] * decay;
        float mi = b1 * m[i] + (1 - b1) * gi;
        float vi = b2 * v[i] + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (__builtin_sqrtf(vi) / bc2_sqrt + eps);
    }
}

CLONES void ck_gated_residual(const float *x, const float *gate, const float *a, float *y, ptrdiff_t rows,
                              ptrdiff_t n) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * n, *ar = a + r * n;
        float *yr = y + r * n;
        for (ptrdiff_t j = 0; j < n; j++) yr[j] = xr[j] + gate[j] * ar[j];
    }
}

CLONES void ck_modulate(const float *x, const float *shift, const float *scale, float *y, ptrdiff_t rows,
                        ptrdiff_t n) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        for (ptrdiff_t j = 0; j < n; j++) yr[j] = xr[j] * (1.0f + scale[j]) + shift[j];
    }
}

CLONES void ck_scale_rows(const float *g, const float *s, float add, float *y, ptrdiff_t rows, ptrdiff_t n) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *gr = g + r * n;
        float *yr = y + r * n;
        for (ptrdiff_t j = 0; j < n; j++) yr[j] = gr[j] * (add + s[j]);
    }
}

// ---- Linear over a few rows (adaLN and timestep MLPs at small batch) ----
// y[r, j] = bias[j] + x[r, :] . w[j, :] for j in [j0, j1): each weight row is read once from
// memory for up to four input rows (sgemm would pack the whole weight first, tripling the
// memory traffic of what is a memory-bound product).

CLONES void ck_linear_few_rows(const float *x, ptrdiff_t rows, const float *w, const float *bias, float *y,
                               ptrdiff_t k, ptrdiff_t ldy, ptrdiff_t j0, ptrdiff_t j1) {
    ptrdiff_t kv = k / LANES * LANES;
    for (ptrdiff_t j = j0; j < j1; j++) {
        const float *wj = w + j * k;
        float b = bias ? bias[j] : 0.0f;
        ptrdiff_t r = 0;
        for (; r + 4 <= rows; r += 4) {
            const float *x0 = x + r * k, *x1 = x0 + k, *x2 = x1 + k, *x3 = x2 + k;
            float a0[LANES] = {0}, a1[LANES] = {0}, a2[LANES] = {0}, a3[LANES] = {0};
            for (ptrdiff_t i = 0; i < kv; i += LANES) {
                for (int l = 0; l < LANES; l++) {
                    float wv = wj[i + l];
                    a0[l] += x0[i + l] * wv;
                    a1[l] += x1[i + l] * wv;
                    a2[l] += x2[i + l] * wv;
                    a3[l] += x3[i + l] * wv;
                }
            }
            float s0 = lane_total(a0), s1 = lane_total(a1), s2 = lane_total(a2), s3 = lane_total(a3);
            for (ptrdiff_t i = kv; i < k; i++) {
                s0 += x0[i] * wj[i]; s1 += x1[i] * wj[i]; s2 += x2[i] * wj[i]; s3 += x3[i] * wj[i];
            }
            y[r * ldy + j] = s0 + b;
            y[(r + 1) * ldy + j] = s1 + b;
            y[(r + 2) * ldy + j] = s2 + b;
            y[(r + 3) * ldy + j] = s3 + b;
        }
        for (; r < rows; r++) {
            const float *xr = x + r * k;
            float a[LANES] = {0};
            for (ptrdiff_t i = 0; i < kv; i += LANES)
                for (int l = 0; l < LANES; l++) a[l] += xr[i + l] * wj[i + l];
            float s = lane_total(a);
            for (ptrdiff_t i = kv; i < k; i++) s += xr[i] * wj[i];
            y[r * ldy + j] = s + b;
        }
    }
}

// LayerNorm of one row (two passes: mean, then variance of the centred values, as PyTorch),
// sums in lanes; w and b may each be NULL. Writes the mean and 1 / sqrt(var + eps).
CLONES void ck_layernorm_row(const float *x, float *y, ptrdiff_t n, float eps, const float *w, const float *b,
                             float *mean_out, float *rstd_out) {
    float mu = lane_sum(x, n) / (float)n;
    ptrdiff_t nv = n / LANES * LANES;
    float lv[LANES] = {0};
    for (ptrdiff_t i = 0; i < nv; i += LANES)
        for (int l = 0; l < LANES; l++) { float d = x[i + l] - mu; lv[l] += d * d; }
    float v = lane_total(lv);
    for (ptrdiff_t i = nv; i < n; i++) { float d = x[i] - mu; v += d * d; }
    float rs = 1.0f / sqrtf(v / (float)n + eps);
    if (w && b) for (ptrdiff_t i = 0; i < n; i++) y[i] = (x[i] - mu) * rs * w[i] + b[i];
    else if (w) for (ptrdiff_t i = 0; i < n; i++) y[i] = (x[i] - mu) * rs * w[i];
    else if (b) for (ptrdiff_t i = 0; i < n; i++) y[i] = (x[i] - mu) * rs + b[i];
    else for (ptrdiff_t i = 0; i < n; i++) y[i] = (x[i] - mu) * rs;
    *mean_out = mu;
    *rstd_out = rs;
}

// bfloat16 is the upper half of a float32: rounding to nearest even adds 0x7fff plus the lowest
// kept bit before truncating; NaNs keep their sign and become quiet (never rounded to infinity).
CLONES void ck_f32_to_bf16(const float *x, uint16_t *y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, x + i, 4);
        uint32_t r = u + 0x7fffu + ((u >> 16) & 1u);
        y[i] = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40u) : (uint16_t)(r >> 16);
    }
}

CLONES void ck_bf16_to_f32(const uint16_t *x, float *y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)x[i] << 16;
        memcpy(y + i, &u, 4);
    }
}

// ---- Blocked (flash-style) attention: the row-wise steps between the tile products ----

// Online softmax over one tile of scores s (rows x n, leading dimension ld) for rows whose
// running maximum m and running sum l cover the tiles before: s becomes exp(s - m_new), and
// corr[r] = exp(m_old - m_new) is the factor that rescales the rows' accumulated output (0 for
// the first tile, where m_old is -inf); then l = l * corr + rowsum(s), m = m_new.
CLONES void ck_flash_softmax_tile(float *s, ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ld, float *m, float *l, float *corr) {
    ptrdiff_t nv = n / LANES * LANES;
    for (ptrdiff_t r = 0; r < rows; r++) {
        float *x = s + r * ld;
        float lm[LANES];
        for (int k = 0; k < LANES; k++) lm[k] = -INFINITY;
        for (ptrdiff_t i = 0; i < nv; i += LANES)
            for (int k = 0; k < LANES; k++) lm[k] = x[i + k] > lm[k] ? x[i + k] : lm[k];
        float mx = m[r];
        for (int k = 0; k < LANES; k++) mx = lm[k] > mx ? lm[k] : mx;
        for (ptrdiff_t i = nv; i < n; i++) mx = x[i] > mx ? x[i] : mx;
        for (ptrdiff_t i = 0; i < n; i++) x[i] = exp_poly(x[i] - mx);
        float c = m[r] == -INFINITY ? 0.0f : exp_poly(m[r] - mx);
        corr[r] = c;
        l[r] = l[r] * c + lane_sum(x, n);
        m[r] = mx;
    }
}

// x[r * ld + i] *= c[r] for i < n.
CLONES void ck_scale_rows_strided(float *x, ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ld, const float *c) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        float *row = x + r * ld, f = c[r];
        for (ptrdiff_t i = 0; i < n; i++) row[i] *= f;
    }
}

// Backward: the probabilities of a tile from its scores and the rows' log-sum-exp,
// s = exp(s - lse[r]).
CLONES void ck_flash_probs_tile(float *s, ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ld, const float *lse) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        float *x = s + r * ld, m = lse[r];
        for (ptrdiff_t i = 0; i < n; i++) x[i] = exp_poly(x[i] - m);
    }
}

// Backward: the score gradient of a tile, dp = p * (dp - d[r]) with d[r] = rowsum(dO * O).
CLONES void ck_flash_dscores_tile(const float *p, float *dp, ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ld, const float *d) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *pr = p + r * ld;
        float *g = dp + r * ld, dr = d[r];
        for (ptrdiff_t i = 0; i < n; i++) g[i] = pr[i] * (g[i] - dr);
    }
}

// out[r] = sum_i a[r * lda + i] * b[r * ldb + i] for i < n.
CLONES void ck_rows_dot(const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, ptrdiff_t rows, ptrdiff_t n, float *out) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *x = a + r * lda, *y = b + r * ldb;
        float acc[LANES] = {0};
        ptrdiff_t nv = n / LANES * LANES;
        for (ptrdiff_t i = 0; i < nv; i += LANES)
            for (int k = 0; k < LANES; k++) acc[k] += x[i + k] * y[i + k];
        float s = 0;
        for (int k = 0; k < LANES; k++) s += acc[k];
        for (ptrdiff_t i = nv; i < n; i++) s += x[i] * y[i];
        out[r] = s;
    }
}

// ---- bf16 helpers of mixed-precision products ----

static inline uint16_t bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t r = u + 0x7fffu + ((u >> 16) & 1u);
    return (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40u) : (uint16_t)(r >> 16);
}

CLONES void ck_round_bf16(const float *x, float *y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)bf16_bits(x[i]) << 16;
        memcpy(y + i, &u, 4);
    }
}

CLONES void ck_f32_to_bf16_transposed(const float *x, ptrdiff_t rows, ptrdiff_t cols, uint16_t *y) {
    // 32 x 32 blocks keep both sides in cache.
    for (ptrdiff_t r0 = 0; r0 < rows; r0 += 32)
        for (ptrdiff_t c0 = 0; c0 < cols; c0 += 32) {
            ptrdiff_t r1 = r0 + 32 < rows ? r0 + 32 : rows, c1 = c0 + 32 < cols ? c0 + 32 : cols;
            for (ptrdiff_t r = r0; r < r1; r++)
                for (ptrdiff_t c = c0; c < c1; c++) y[c * rows + r] = bf16_bits(x[r * cols + c]);
        }
}
