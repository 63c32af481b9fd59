// oneDNN 2.6 (Debian libdnnl-dev, C API) for the matmul engine in Tensor/Engine.swift: cached
// matmul primitives over row-major float32 activations and weights packed once into the layout
// the primitive asks for. Debian builds oneDNN on GNU OpenMP (DNNL_CPU_RUNTIME OMP; ldd shows
// libgomp), so its thread count is OpenMP's, set per calling thread with omp_set_num_threads.

#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <string.h>

// From libgomp (omp.h lives in GCC's private include directory, which clang does not search).
int omp_get_max_threads(void);
void omp_set_num_threads(int n);

/// One matmul primitive C (M, N) = A (M, K) . B (K, N) [+ bias (1, N)]: A and C float32 row-major;
/// B in `wdt` (f32 or bf16) in the layout `weights_md`; A in `sdt` (bf16 matmuls read bf16
/// activations; C and the bias stay float32). The memory objects carry the layouts; their data
/// pointers are set on every call.
typedef struct {
    dnnl_primitive_t primitive;
    dnnl_memory_t src, weights, bias, dst;
    dnnl_memory_desc_t weights_md;
    const char *impl;        // oneDNN's implementation name (owned by the primitive descriptor)
    dnnl_primitive_desc_t pd;
} cd_matmul;

static inline void cd_matmul_destroy(cd_matmul *m) {
    if (m->src) dnnl_memory_destroy(m->src);
    if (m->weights) dnnl_memory_destroy(m->weights);
    if (m->bias) dnnl_memory_destroy(m->bias);
    if (m->dst) dnnl_memory_destroy(m->dst);
    if (m->primitive) dnnl_primitive_destroy(m->primitive);
    if (m->pd) dnnl_primitive_desc_destroy(m->pd);
    memset(m, 0, sizeof(*m));
}

/// Creates the primitive. `layout` is the weights' layout to use (NULL: let oneDNN choose, i.e.
/// format_tag any, then read it back from `out->weights_md`). Returns oneDNN's status.
static inline dnnl_status_t cd_matmul_create(dnnl_engine_t engine, int64_t m, int64_t k, int64_t n,
                                             dnnl_data_type_t sdt, dnnl_data_type_t wdt, int with_bias,
                                             const dnnl_memory_desc_t *layout, cd_matmul *out) {
    memset(out, 0, sizeof(*out));
    dnnl_memory_desc_t a_md, b_md, c_md, bias_md;
    dnnl_dims_t ad = {m, k}, bd = {k, n}, cd = {m, n}, biasd = {1, n};
    dnnl_status_t s;
    if ((s = dnnl_memory_desc_init_by_tag(&a_md, 2, ad, sdt, dnnl_ab))) return s;
    if (layout) b_md = *layout;
    else if ((s = dnnl_memory_desc_init_by_tag(&b_md, 2, bd, wdt, dnnl_format_tag_any))) return s;
    if ((s = dnnl_memory_desc_init_by_tag(&c_md, 2, cd, dnnl_f32, dnnl_ab))) return s;
    if ((s = dnnl_memory_desc_init_by_tag(&bias_md, 2, biasd, dnnl_f32, dnnl_ab))) return s;
    dnnl_matmul_desc_t desc;
    if ((s = dnnl_matmul_desc_init(&desc, &a_md, &b_md, with_bias ? &bias_md : NULL, &c_md))) return s;
    if ((s = dnnl_primitive_desc_create(&out->pd, &desc, NULL, engine, NULL))) { out->pd = NULL; return s; }
    const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(out->pd, dnnl_query_weights_md, 0);
    out->weights_md = *wmd;
    dnnl_primitive_desc_query(out->pd, dnnl_query_impl_info_str, 0, &out->impl);
    if ((s = dnnl_primitive_create(&out->primitive, out->pd))) goto fail;
    if ((s = dnnl_memory_create(&out->src, &a_md, engine, DNNL_MEMORY_NONE))) goto fail;
    if ((s = dnnl_memory_create(&out->weights, wmd, engine, DNNL_MEMORY_NONE))) goto fail;
    if ((s = dnnl_memory_create(&out->dst, &c_md, engine, DNNL_MEMORY_NONE))) goto fail;
    if (with_bias && (s = dnnl_memory_create(&out->bias, &bias_md, engine, DNNL_MEMORY_NONE))) goto fail;
    return dnnl_success;
fail:
    cd_matmul_destroy(out);
    return s;
}

/// Sets OpenMP's thread count for the calling thread (oneDNN reads omp_get_max_threads()).
static inline void cd_set_threads(int n) {
    if (omp_get_max_threads() != n) omp_set_num_threads(n);
}

/// Runs the product on `stream` (synchronously) with `threads` OpenMP threads.
static inline dnnl_status_t cd_matmul_execute(const cd_matmul *m, dnnl_stream_t stream, int threads,
                                              const void *src, const void *weights, const float *bias, float *dst) {
    cd_set_threads(threads);
    dnnl_status_t s;
    if ((s = dnnl_memory_set_data_handle(m->src, (void *)src))) return s;
    if ((s = dnnl_memory_set_data_handle(m->weights, (void *)weights))) return s;
    if ((s = dnnl_memory_set_data_handle(m->dst, dst))) return s;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, m->src}, {DNNL_ARG_WEIGHTS, m->weights}, {DNNL_ARG_DST, m->dst},
                               {DNNL_ARG_BIAS, m->bias}};
    int nargs = 3;
    if (m->bias) {
        if ((s = dnnl_memory_set_data_handle(m->bias, (void *)bias))) return s;
        nargs = 4;
    }
    if ((s = dnnl_primitive_execute(m->primitive, stream, nargs, args))) return s;
    return dnnl_stream_wait(stream);
}

/// Bytes of a memory descriptor's buffer.
static inline size_t cd_size(const dnnl_memory_desc_t *md) { return dnnl_memory_desc_get_size(md); }

/// Reorders a weight in PyTorch's [N, K] row-major float32 layout (B^T, i.e. B (K, N) with tag
/// `ba`) into `layout` (any data type oneDNN converts to, e.g. bf16 with round-to-nearest-even).
static inline dnnl_status_t cd_pack_weights(dnnl_engine_t engine, dnnl_stream_t stream, int threads,
                                            int64_t k, int64_t n, const float *weight,
                                            const dnnl_memory_desc_t *layout, void *packed) {
    cd_set_threads(threads);
    dnnl_memory_desc_t plain;
    dnnl_dims_t bd = {k, n};
    dnnl_status_t s;
    if ((s = dnnl_memory_desc_init_by_tag(&plain, 2, bd, dnnl_f32, dnnl_ba))) return s;
    dnnl_memory_t from = NULL, to = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t reorder = NULL;
    if ((s = dnnl_memory_create(&from, &plain, engine, (void *)weight))) goto done;
    if ((s = dnnl_memory_create(&to, layout, engine, packed))) goto done;
    if ((s = dnnl_reorder_primitive_desc_create(&pd, &plain, engine, layout, engine, NULL))) { pd = NULL; goto done; }
    if ((s = dnnl_primitive_create(&reorder, pd))) { reorder = NULL; goto done; }
    {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
        if ((s = dnnl_primitive_execute(reorder, stream, 2, args))) goto done;
        s = dnnl_stream_wait(stream);
    }
done:
    if (reorder) dnnl_primitive_destroy(reorder);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (from) dnnl_memory_destroy(from);
    if (to) dnnl_memory_destroy(to);
    return s;
}

/// Whether two layouts are the same (1) or not (0).
static inline int cd_same_layout(const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b) {
    return dnnl_memory_desc_equal(a, b);
}

/// PyTorch's [N, K] row-major float32 weight as oneDNN's B (K, N): tag `ba`.
static inline dnnl_status_t cd_plain_nk_f32(int64_t k, int64_t n, dnnl_memory_desc_t *md) {
    dnnl_dims_t bd = {k, n};
    return dnnl_memory_desc_init_by_tag(md, 2, bd, dnnl_f32, dnnl_ba);
}

/// B (K, N) row-major (tag `ab`) in `dt`: the layout of the plain products of the backward.
static inline dnnl_status_t cd_plain_kn(int64_t k, int64_t n, dnnl_data_type_t dt, dnnl_memory_desc_t *md) {
    dnnl_dims_t bd = {k, n};
    return dnnl_memory_desc_init_by_tag(md, 2, bd, dt, dnnl_ab);
}

/// Whether the layout is PyTorch's [N, K] row-major (tag `ba` of B (K, N)) in float32: then the
/// weight's own storage serves as the packed weight (no copy).
static inline int cd_is_plain_nk_f32(const dnnl_memory_desc_t *md, int64_t k, int64_t n) {
    dnnl_memory_desc_t plain;
    dnnl_dims_t bd = {k, n};
    if (dnnl_memory_desc_init_by_tag(&plain, 2, bd, dnnl_f32, dnnl_ba)) return 0;
    return dnnl_memory_desc_equal(md, &plain);
}

/// A short name of oneDNN's effective ISA.
static inline const char *cd_isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "unknown";
    }
}

/// Whether the ISA includes AVX512-BF16 (avx512_core_bf16 and avx512_core_amx do).
static inline int cd_isa_has_bf16(dnnl_cpu_isa_t isa) {
    return ((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) == (unsigned)dnnl_cpu_isa_avx512_core_bf16;
}
