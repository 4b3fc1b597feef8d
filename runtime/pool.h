/* A team of threads for one call: phases of work items, run in order with a
 * barrier between them; within a phase, threads take items from a shared
 * counter. The calling thread is a member, so a thread that cannot be
 * started only means fewer workers. Nothing outlives the call. */
#ifndef SPAT_POOL_H
#define SPAT_POOL_H

#include <stdint.h>

#define SP_POOL_MAX_PHASES 40

typedef struct sp_pool_job {
    int nphases;
    int64_t nitems[SP_POOL_MAX_PHASES];
    /* Runs one item on thread tid (0 .. threads-1); a non-zero return (a
     * spat_status) stops the job: the remaining items are skipped. */
    int (*run)(void *arg, int tid, int phase, int64_t item);
    void *arg;
} sp_pool_job;

/* Runs the job on up to `threads` threads (at least the caller); returns
 * SPAT_OK or the first failure an item returned. */
int sp_pool_run(const sp_pool_job *job, int threads);

#endif
