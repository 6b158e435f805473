/* threads.c: the thread count shared by every OpenMP region of twin, and a monotonic clock. */
#include "core.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
static _Atomic int threads_n;

static void threads_init(void) {
    const char *e = getenv("TWIN_THREADS");
    int n = e ? atoi(e) : 0;
    if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0) n = 1;
    threads_n = n;
    omp_set_num_threads(n);
}

void tw_threads_set(int n) {
    pthread_once(&threads_once, threads_init);
    if (n <= 0) return;
    threads_n = n;
    omp_set_num_threads(n);
}

int tw_threads_get(void) {
    pthread_once(&threads_once, threads_init);
    return threads_n;
}

double tw_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
