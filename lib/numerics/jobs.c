#include "jobs.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct jobs {
    pthread_mutex_t lock;
    pthread_cond_t ready;     // a batch was submitted, or quit
    pthread_cond_t done;      // the last job of the batch finished
    job_fn fn;
    void *ctx;
    int count, next, finished;
    bool quit;
    int nworkers;
    pthread_t *workers;
};

typedef struct {
    jobs *j;
    int worker;
} worker_arg;

// Takes the next job of the batch under the lock; false when none is left.
static bool take(jobs *j, int *index)
{
    if (j->next >= j->count)
        return false;
    *index = j->next++;
    return true;
}

static void run(jobs *j, int index, int worker)
{
    j->fn(j->ctx, index, worker);
    pthread_mutex_lock(&j->lock);
    if (++j->finished == j->count)
        pthread_cond_signal(&j->done);
    pthread_mutex_unlock(&j->lock);
}

static void *worker_main(void *p)
{
    worker_arg a = *(worker_arg *)p;
    free(p);
    jobs *j = a.j;
    pthread_mutex_lock(&j->lock);
    for (;;) {
        int index;
        while (!j->quit && !take(j, &index))
            pthread_cond_wait(&j->ready, &j->lock);
        if (j->quit)
            break;
        pthread_mutex_unlock(&j->lock);
        run(j, index, a.worker);
        pthread_mutex_lock(&j->lock);
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

jobs *jobs_start(int threads)
{
    jobs *j = xcalloc(1, sizeof *j);
    pthread_mutex_init(&j->lock, NULL);
    pthread_cond_init(&j->ready, NULL);
    pthread_cond_init(&j->done, NULL);
    j->nworkers = threads > 1 ? threads - 1 : 0;
    j->workers = xcalloc((size_t)j->nworkers, sizeof *j->workers);
    for (int i = 0; i < j->nworkers; i++) {
        worker_arg *a = xmalloc(sizeof *a);
        *a = (worker_arg){j, i + 1};
        int err = pthread_create(&j->workers[i], NULL, worker_main, a);
        if (err)
            die("jobs", "cannot start a thread: %s", strerror(err));
    }
    return j;
}

void jobs_submit(jobs *j, int count, job_fn fn, void *ctx)
{
    pthread_mutex_lock(&j->lock);
    j->fn = fn;
    j->ctx = ctx;
    j->count = count;
    j->next = 0;
    j->finished = 0;
    pthread_cond_broadcast(&j->ready);
    pthread_mutex_unlock(&j->lock);
}

void jobs_wait(jobs *j)
{
    pthread_mutex_lock(&j->lock);
    int index;
    while (take(j, &index)) {
        pthread_mutex_unlock(&j->lock);
        run(j, index, 0);
        pthread_mutex_lock(&j->lock);
    }
    while (j->finished < j->count)
        pthread_cond_wait(&j->done, &j->lock);
    pthread_mutex_unlock(&j->lock);
}

void jobs_stop(jobs *j)
{
    pthread_mutex_lock(&j->lock);
    j->quit = true;
    pthread_cond_broadcast(&j->ready);
    pthread_mutex_unlock(&j->lock);
    for (int i = 0; i < j->nworkers; i++)
        pthread_join(j->workers[i], NULL);
    pthread_cond_destroy(&j->ready);
    pthread_cond_destroy(&j->done);
    pthread_mutex_destroy(&j->lock);
    free(j->workers);
    free(j);
}
