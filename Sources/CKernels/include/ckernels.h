#ifndef CKERNELS_H
#define CKERNELS_H
// Vectorized elementwise math for the Tensor kernels (polynomial exp, tanh, erf and the
// activations built on them). Compiled for AVX-512, AVX2 and baseline x86-64 (chosen at load
// time). Accuracy: exp within ~2 ulp, tanh/erf within ~2e-7 absolute.
#include <stddef.h>

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
#endif
