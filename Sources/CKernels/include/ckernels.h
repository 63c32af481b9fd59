#ifndef CKERNELS_H
#define CKERNELS_H
// Vectorized elementwise math for the Tensor kernels (polynomial exp, tanh, erf and the
// activations built on them). Compiled for AVX-512, AVX2 and baseline x86-64 (chosen at load
// time). Accuracy: exp within ~2 ulp, tanh/erf within ~2e-7 absolute.
#include <stddef.h>
#include <stdint.h>

void ck_exp(const float *x, float *y, ptrdiff_t n);
void ck_tanh(const float *x, float *y, ptrdiff_t n);
void ck_sigmoid(const float *x, float *y, ptrdiff_t n);
void ck_silu(const float *x, float *y, ptrdiff_t n);
/// dx = g * silu'(x)
void ck_silu_grad(const float *x, const float *g, float *dx, ptrdiff_t n);
void ck_gelu_tanh(const float *x, float *y, ptrdiff_t n);
void ck_gelu_tanh_grad(const float *x, const float *g, float *dx, ptrdiff_t n);
void ck_gelu_erf(const float *x, float *y, ptrdiff_t n);
void ck_gelu_erf_grad(const float *x, const float *g, float *dx, ptrdiff_t n);
/// In-place-safe softmax of one row of n values.
void ck_softmax_row(const float *x, float *y, ptrdiff_t n);
/// y[i] = x[i] + b[i % width] applied over rows, then GELU-tanh: fused bias + activation.
void ck_bias_gelu_tanh_rows(float *y, const float *bias, ptrdiff_t rows, ptrdiff_t width);
/// Sum of squares (float partial sums over blocks of 1024, total in double).
double ck_sum_squares(const float *x, ptrdiff_t n);
/// acc[j] += sum over r < rows of x[r * ld + j], j < n.
void ck_add_rows(const float *x, ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ld, float *acc);
/// acc[j] += sum over r of a[r * ld + j] * b[r * ld + j].
void ck_add_rows_product(const float *a, const float *b, ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ld, float *acc);
/// One AdamW update of n parameters with gradient g * gscale (PyTorch's formula: decoupled
/// decay p *= decay, moments, p -= step_size * m / (sqrt(v) / bc2_sqrt + eps)).
void ck_adamw(float *p, const float *g, float *m, float *v, ptrdiff_t n, float gscale, float b1, float b2,
              float eps, float decay, float step_size, float bc2_sqrt);
/// y = x + gate * a over rows of n (gate: n values shared by the rows).
void ck_gated_residual(const float *x, const float *gate, const float *a, float *y, ptrdiff_t rows, ptrdiff_t n);
/// y = x * (1 + scale) + shift over rows of n (shift, scale: n values shared by the rows).
void ck_modulate(const float *x, const float *shift, const float *scale, float *y, ptrdiff_t rows, ptrdiff_t n);
/// y = g * (add + s) over rows of n (s: n values shared by the rows).
void ck_scale_rows(const float *g, const float *s, float add, float *y, ptrdiff_t rows, ptrdiff_t n);
/// y[r * ldy + j] = bias[j] + dot(x[r * k ...], w[j * k ...]) for r < rows, j0 <= j < j1 (bias may
/// be NULL): a Linear over a few rows that reads each weight row once.
void ck_linear_few_rows(const float *x, ptrdiff_t rows, const float *w, const float *bias, float *y,
                        ptrdiff_t k, ptrdiff_t ldy, ptrdiff_t j0, ptrdiff_t j1);
/// LayerNorm of one row of n values (w, b may be NULL); writes the mean and reciprocal std.
void ck_layernorm_row(const float *x, float *y, ptrdiff_t n, float eps, const float *w, const float *b,
                      float *mean_out, float *rstd_out);
/// y = bfloat16(x), round to nearest even (NaN stays a quiet NaN): the activations of a bf16 matmul.
void ck_f32_to_bf16(const float *x, uint16_t *y, ptrdiff_t n);
/// y = float(x) (exact).
void ck_bf16_to_f32(const uint16_t *x, float *y, ptrdiff_t n);
/// Blocked attention, online softmax of one score tile (rows x n, leading dimension ld): s =
/// exp(s - m_new); corr = exp(m_old - m_new) (0 on the first tile); l = l corr + rowsum; m = m_new.
void ck_flash_softmax_tile(float *s, ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ld, float *m, float *l, float *corr);
/// x[r * ld + i] *= c[r] for i < n.
void ck_scale_rows_strided(float *x, ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ld, const float *c);
/// Blocked attention backward: s = exp(s - lse[r]) (probabilities from scores and log-sum-exp).
void ck_flash_probs_tile(float *s, ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ld, const float *lse);
/// Blocked attention backward: dp = p * (dp - d[r]).
void ck_flash_dscores_tile(const float *p, float *dp, ptrdiff_t rows, ptrdiff_t n, ptrdiff_t ld, const float *d);
/// out[r] = dot(a[r * lda ...], b[r * ldb ...]) over n values.
void ck_rows_dot(const float *a, ptrdiff_t lda, const float *b, ptrdiff_t ldb, ptrdiff_t rows, ptrdiff_t n, float *out);
/// y = x rounded to bfloat16 (round to nearest even), kept as float: the software reference of
/// bf16 products (the rounded operands multiplied and summed in float32).
void ck_round_bf16(const float *x, float *y, ptrdiff_t n);
/// y (cols, rows) = bfloat16(x (rows, cols))^T, round to nearest even.
void ck_f32_to_bf16_transposed(const float *x, ptrdiff_t rows, ptrdiff_t cols, uint16_t *y);
#endif
