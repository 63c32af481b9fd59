#include <limits.h>
#include <malloc.h>

// Tensor buffers come and go at the same sizes every step (activations, gradients). By default
// glibc serves blocks above its mmap threshold with fresh mappings and returns them on free, so
// every training step and sampler step faults its working set in again page by page (the kernel
// zeroes each page). Raising the mmap threshold to its 32 MiB maximum and keeping freed memory
// in the heap makes steady-state steps reuse their memory. Blocks above 32 MiB (large weights)
// are still mapped and unmapped as before. The heap is trimmed only once more than 2 GiB is free
// at its top: a training step frees its activations at the end and allocates them again at the
// start of the next one, so a lower bound would hand them back and fault them in every step (the
// process keeps its peak, as PyTorch's caching allocator does). Runs once when the library loads.
__attribute__((constructor))
static void ck_configure_allocator(void) {
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    // mallopt takes an int: 2 GiB itself would wrap to INT_MIN (which glibc then reads as "never").
    mallopt(M_TRIM_THRESHOLD, INT_MAX);
}
