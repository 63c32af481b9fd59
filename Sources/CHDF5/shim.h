#include <hdf5.h>
// HDF5 constants are macros over global ids that Swift cannot import; expose them as functions.
static inline hid_t h5_p_default(void) { return H5P_DEFAULT; }
static inline hid_t h5_s_all(void) { return H5S_ALL; }
static inline hid_t h5_t_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t h5_t_native_double(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t h5_t_native_int64(void) { return H5T_NATIVE_INT64; }
static inline hid_t h5_t_native_int32(void) { return H5T_NATIVE_INT32; }
static inline hid_t h5_t_c_s1(void) { return H5T_C_S1; }
static inline hid_t h5_p_dataset_create(void) { return H5P_DATASET_CREATE; }
static inline hid_t h5_p_file_access(void) { return H5P_FILE_ACCESS; }
static inline unsigned h5f_acc_trunc(void) { return H5F_ACC_TRUNC; }
static inline unsigned h5f_acc_excl(void) { return H5F_ACC_EXCL; }
static inline unsigned h5f_acc_rdwr(void) { return H5F_ACC_RDWR; }
static inline unsigned h5f_acc_rdonly(void) { return H5F_ACC_RDONLY; }
static inline hsize_t h5s_unlimited(void) { return H5S_UNLIMITED; }
static inline void h5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
// File-side (little-endian, portable) types used by the latent cache.
static inline hid_t h5_t_std_i64le(void) { return H5T_STD_I64LE; }
static inline hid_t h5_t_ieee_f32le(void) { return H5T_IEEE_F32LE; }
static inline hid_t h5_t_ieee_f64le(void) { return H5T_IEEE_F64LE; }
static inline size_t h5t_variable(void) { return H5T_VARIABLE; }
static inline hid_t h5p_file_create(void) { return H5P_FILE_CREATE; }
