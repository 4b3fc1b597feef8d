/* The per-call thread team of pool.h. */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#include "internal.h"
#include "pool.h"

typedef struct team {
    const sp_pool_job *job;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int members;     /* threads taking part, fixed before anyone works */
    bool go;
    int waiting;
    unsigned gen;
    atomic_llong next[SP_POOL_MAX_PHASES];
    atomic_int failed;
} team;

typedef struct member {
    team *t;
    int tid;
} member;

static void barrier(team *t)
{
    pthread_mutex_lock(&t->mu);
    unsigned gen = t->gen;
    if (++t->waiting == t->members) {
        t->waiting = 0;
        t->gen++;
        pthread_cond_broadcast(&t->cv);
    } else {
        while (gen == t->gen)
            pthread_cond_wait(&t->cv, &t->mu);
    }
    pthread_mutex_unlock(&t->mu);
}

static void work(team *t, int tid)
{
    const sp_pool_job *j = t->job;
    for (int p = 0; p < j->nphases; p++) {
        for (;;) {
            if (atomic_load(&t->failed))
                break;
            int64_t i = atomic_fetch_add(&t->next[p], 1);
            if (i >= j->nitems[p])
                break;
            int rc = j->run(j->arg, tid, p, i);
            if (rc != SPAT_OK) {
                int zero = 0;
                atomic_compare_exchange_strong(&t->failed, &zero, rc);
            }
        }
        if (p + 1 < j->nphases)
            barrier(t);
    }
}

static void *worker(void *arg)
{
    member *m = arg;
    team *t = m->t;
    pthread_mutex_lock(&t->mu);
    while (!t->go)
        pthread_cond_wait(&t->cv, &t->mu);
    pthread_mutex_unlock(&t->mu);
    work(t, m->tid);
    return NULL;
}

int sp_pool_run(const sp_pool_job *job, int threads)
{
    team t = {.job = job};
    pthread_mutex_init(&t.mu, NULL);
    pthread_cond_init(&t.cv, NULL);
    for (int p = 0; p < SP_POOL_MAX_PHASES; p++)
        atomic_init(&t.next[p], 0);
    atomic_init(&t.failed, 0);
    if (threads < 1)
        threads = 1;
    pthread_t *tid = threads > 1 ? malloc(sizeof *tid * (size_t)threads) : NULL;
    member *mem = threads > 1 ? malloc(sizeof *mem * (size_t)threads) : NULL;
    int started = 0;
    if (tid && mem)
        for (int i = 1; i < threads; i++) {
            mem[started] = (member){&t, started + 1};
            if (pthread_create(&tid[started], NULL, worker, &mem[started]) != 0)
                break;
            started++;
        }
    pthread_mutex_lock(&t.mu);
    t.members = started + 1;
    t.go = true;
    pthread_cond_broadcast(&t.cv);
    pthread_mutex_unlock(&t.mu);
    work(&t, 0);
    for (int i = 0; i < started; i++)
        pthread_join(tid[i], NULL);
    free(tid);
    free(mem);
    pthread_cond_destroy(&t.cv);
    pthread_mutex_destroy(&t.mu);
    return atomic_load(&t.failed);
}
