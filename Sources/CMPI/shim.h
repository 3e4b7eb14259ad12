#include <mpi.h>

// Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, …) are macros taking the address of a
// global, which Swift cannot import; these return them.

static inline MPI_Comm epicycle_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype epicycle_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype epicycle_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype epicycle_mpi_uint64(void) { return MPI_UINT64_T; }
static inline MPI_Datatype epicycle_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype epicycle_mpi_int32(void) { return MPI_INT32_T; }
static inline MPI_Datatype epicycle_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Op epicycle_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op epicycle_mpi_min(void) { return MPI_MIN; }
static inline MPI_Op epicycle_mpi_max(void) { return MPI_MAX; }
static inline void *epicycle_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *epicycle_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline int epicycle_mpi_any_source(void) { return MPI_ANY_SOURCE; }
