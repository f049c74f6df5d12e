// Tests of lib/numerics/jobs: every job of every batch runs exactly once, on a
// worker number below the thread count, and the caller may do other work
// between submitting and waiting.
#include "jobs.h"

#include <stdatomic.h>
#include <string.h>

#include "../check.h"

enum { JOBS = 1000 };

typedef struct {
    atomic_int runs[JOBS];
    atomic_int bad_worker;
    int threads;
} tally;

static void count_job(void *ctx, int index, int worker)
{
    tally *t = ctx;
    atomic_fetch_add(&t->runs[index], 1);
    if (worker < 0 || worker >= t->threads)
        atomic_fetch_add(&t->bad_worker, 1);
}

TEST(every_job_once)
{
    for (int threads = 1; threads <= 4; threads++) {
        jobs *j = jobs_start(threads);
        static tally t;
        for (int batch = 0; batch < 5; batch++) {
            memset(&t, 0, sizeof t);
            t.threads = threads;
            int count = batch == 2 ? 0 : JOBS - batch;  // an empty batch too
            jobs_submit(j, count, count_job, &t);
            volatile double busy = 0;  // the caller's own work meanwhile
            for (int i = 0; i < 10000; i++)
                busy += i;
            jobs_wait(j);
            int wrong = 0;
            for (int i = 0; i < JOBS; i++)
                wrong += atomic_load(&t.runs[i]) != (i < count);
            EXPECT_MSG(wrong == 0 && atomic_load(&t.bad_worker) == 0,
                       "%d threads, batch %d: %d jobs ran a wrong number of times", threads, batch, wrong);
        }
        jobs_stop(j);
    }
}

int main(void)
{
    RUN(every_job_once);
    return CHECK_DONE();
}
