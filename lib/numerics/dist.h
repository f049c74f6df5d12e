// dist: data-parallel training over MPI (mpirun -np K), and the exact sums
// that make its result the same bytes whatever K is.
//
// A process started by mpirun (Open MPI's OMPI_COMM_WORLD_SIZE, PMIx's
// PMIX_RANK or PMI's PMI_SIZE in its environment) joins the job in
// dist_init; any other process is rank 0 of 1 and never touches MPI, so a
// tool behaves as it always has.  Built without MPI (no pkg-config ompi-c
// when the library was compiled: MEDSSL_MPI 0), every process is rank 0 of
// 1, and dist_init refuses to run under mpirun rather than train K copies.
//
// Exact sums.  A global batch is split into micro-batches whose size
// depends on the batch alone, never on K; each rank computes the partial
// sums of its own micro-batches (a weight gradient, a batch-norm channel's
// sums), each in a fixed order.  dist_sum_* turns every partial into a
// 64-bit integer on a power-of-two grid agreed by all ranks (the largest
// exponent of the group over every partial of every rank: an MPI_MAX) and
// adds the integers (MPI_SUM), which is exact and so does not depend on the
// order or on which rank holds which partial.  One process (K = 1) runs the
// same conversion and sum over its own partials: the same bytes as K ranks.
// The grid leaves ceil(log2(partials)) bits of headroom: each partial keeps
// 62 - that many bits below its group's largest magnitude (54 bits with 256
// partials), more than a float's 24 and about a double's 53.
//
// Every call is collective: every rank makes the same calls in the same
// order, with the same sizes.  A rank that dies makes mpirun end the job.
#ifndef MEDSSL_DIST_H
#define MEDSSL_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Joins the MPI job when launched by mpirun (see above); once per process.
void dist_init(int *argc, char ***argv);
// Leaves the job (MPI_Finalize) at a normal end; a process that exits
// without it (die) makes mpirun stop the others.
void dist_finalize(void);
// True when this process runs under mpirun (also with -np 1).
bool dist_active(void);
int dist_rank(void);
int dist_size(void);
// "MPI (Open MPI 4.1.4), rank 1 of 2" or "1 process (built without MPI)".
const char *dist_description(void);

// all (size x bytes) = every rank's `bytes` bytes of mine, in rank order.
void dist_allgather(const void *mine, size_t bytes, void *all);
// v (n) = its largest value over the ranks, in place.
void dist_max_int(int *v, int n);
// v (n) = its sum over the ranks, in place (integers: exact).
void dist_sum_i64(int64_t *v, size_t n);

// out (n) = the sum over every rank of its `nparts` partials (nparts, n),
// each group of `group` consecutive elements on one grid (group divides n):
// group 1 for a vector of independent sums (a batch norm's channels), n for
// a tensor.  nparts must be the same on every rank.  NaN or infinity in any
// partial of a group makes that group's sum NaN.
void dist_sum_f64(const double *parts, int nparts, size_t n, size_t group, double *out);
// The same for float partials of one tensor (one grid), ADDED into out.
void dist_sum_f32_add(const float *parts, int nparts, size_t n, float *out);

// Seconds since dist_init spent in MPI calls (moving data and waiting for
// the other ranks) and in dist_sum_*'s conversions to and from fixed point.
void dist_times(double *mpi_seconds, double *convert_seconds);
// The MPI seconds by what they carried: all-gathers (the projections),
// dist_sum_f64's (a batch norm's channel sums), dist_sum_f32_add's (weight
// gradients) and the rest (flags, counts, hashes); and the collective
// calls made and the bytes this rank handed to them (an all-gather's own
// share, an all-reduce's whole vector), since dist_init.
typedef struct {
    double gather, sum_f64, sum_f32, other;
    long long calls, bytes;
} dist_mpi_split;
dist_mpi_split dist_mpi_times(void);

// FNV-1a over bytes, chained from h (start with DIST_HASH_INIT): what the
// ranks compare to find one started with other options or another stream.
#define DIST_HASH_INIT 0xcbf29ce484222325ull
uint64_t dist_hash(uint64_t h, const void *bytes, size_t len);

#endif
