// jobs: a fixed set of worker threads that run a batch of independent jobs
// while the calling thread does something else (typically the stream I/O of
// the previous and next batch), after which the caller joins in and waits.
//
// Why not an OpenMP parallel region per batch: libgomp's idle threads
// spin-wait (GOMP_SPINCOUNT, 300000 'pause' instructions, some 15 ms on
// current x86) before sleeping, and on a machine shared with other work a
// spinning worker takes the core from the thread doing the I/O.  measured on
// augment at 32x32: 2 threads ran 6x slower than 1 with the default policy,
// as fast as 1 with OMP_WAIT_POLICY=passive.  Here idle threads sleep on a
// condition variable.
//
// Jobs must not depend on which thread runs them (the worker number passed
// to a job is for choosing per-thread scratch memory only).
#ifndef MEDSSL_JOBS_H
#define MEDSSL_JOBS_H

typedef struct jobs jobs;

// job(ctx, index, worker): index in [0, count), worker in [0, threads).
typedef void (*job_fn)(void *ctx, int index, int worker);

// threads - 1 worker threads; the caller is worker 0.
jobs *jobs_start(int threads);
// Hands out jobs 0 .. count - 1 to the workers and returns at once.  The
// previous batch must have been waited for.
void jobs_submit(jobs *j, int count, job_fn fn, void *ctx);
// Runs jobs of the current batch on the calling thread until none is left,
// then waits until the workers finished theirs.
void jobs_wait(jobs *j);
// Joins the worker threads and frees j.
void jobs_stop(jobs *j);

#endif
