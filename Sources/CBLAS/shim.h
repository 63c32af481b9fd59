#include <cblas.h>

// LAPACK's symmetric eigensolver as exported by OpenBLAS (Fortran calling convention,
// column-major). Declared here rather than through lapack.h, whose prototypes vary between
// versions (hidden string-length arguments).
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
             double *work, const int *lwork, int *iwork, const int *liwork, int *info);

/// Eigenvalues (ascending) into w and, when vectors != 0, eigenvectors of the symmetric n x n
/// matrix a (overwritten). Because a is symmetric, row- and column-major agree on input; on
/// output, row k of a (row-major view) is the eigenvector of w[k]. Returns LAPACK's info.
static inline int cb_symmetric_eigen(double *a, int n, double *w, int vectors) {
    char jobz = vectors ? 'V' : 'N', uplo = 'U';
    int lwork = -1, liwork = -1, info = 0, iwork_query = 0;
    double work_query = 0;
    dsyevd_(&jobz, &uplo, &n, a, &n, w, &work_query, &lwork, &iwork_query, &liwork, &info);
    if (info != 0) return info;
    lwork = (int)work_query;
    liwork = iwork_query;
    double *work = (double *)__builtin_malloc(sizeof(double) * (size_t)(lwork > 1 ? lwork : 1));
    int *iwork = (int *)__builtin_malloc(sizeof(int) * (size_t)(liwork > 1 ? liwork : 1));
    dsyevd_(&jobz, &uplo, &n, a, &n, w, work, &lwork, iwork, &liwork, &info);
    __builtin_free(work);
    __builtin_free(iwork);
    return info;
}
