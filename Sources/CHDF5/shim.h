#include <hdf5.h>

// HDF5 spells these as macros that expand to calls or to global ids initialised at library load;
// Swift cannot import such macros, so each is wrapped in a function.
static inline hid_t epicycle_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t epicycle_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t epicycle_H5T_NATIVE_INT32(void) { return H5T_NATIVE_INT32; }
static inline hid_t epicycle_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t epicycle_H5T_NATIVE_UINT8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t epicycle_H5T_NATIVE_UINT64(void) { return H5T_NATIVE_UINT64; }
static inline hid_t epicycle_H5T_C_S1(void) { return H5T_C_S1; }
static inline unsigned epicycle_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned epicycle_H5F_ACC_EXCL(void) { return H5F_ACC_EXCL; }
static inline unsigned epicycle_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned epicycle_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline hid_t epicycle_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t epicycle_H5P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline hid_t epicycle_H5P_LINK_CREATE(void) { return H5P_LINK_CREATE; }
static inline hid_t epicycle_H5E_DEFAULT(void) { return H5E_DEFAULT; }
static inline hid_t epicycle_H5P_GROUP_CREATE(void) { return H5P_GROUP_CREATE; }
static inline hid_t epicycle_H5P_FILE_CREATE(void) { return H5P_FILE_CREATE; }
static inline hid_t epicycle_H5T_IEEE_F32LE(void) { return H5T_IEEE_F32LE; }
static inline hid_t epicycle_H5T_IEEE_F64LE(void) { return H5T_IEEE_F64LE; }
static inline hid_t epicycle_H5T_STD_I64LE(void) { return H5T_STD_I64LE; }
static inline hid_t epicycle_H5T_STD_U64LE(void) { return H5T_STD_U64LE; }
static inline size_t epicycle_H5T_VARIABLE(void) { return H5T_VARIABLE; }
static inline hid_t epicycle_H5S_ALL(void) { return H5S_ALL; }
static inline hid_t epicycle_H5E_TRUNCATED(void) { return H5E_TRUNCATED; }
static inline unsigned epicycle_H5F_OBJ_ALL(void) { return H5F_OBJ_ALL; }

// Exported by libhdf5 but declared only in its private headers: the Jenkins lookup3 checksum HDF5
// puts on metadata, used to reseal the superblock of a file image (see CheckpointWriter.swift).
uint32_t H5_checksum_metadata(const void *data, size_t len, uint32_t initval);
