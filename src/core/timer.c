/* timer.c: monotonic time and the SIGUSR1/SIGTERM stop flag (the handler only
 * records the signal; the training loop acts on it at a step boundary). */
#include "lfs/timer.h"

#include <signal.h>
#include <string.h>
#include <time.h>

double lfs_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile sig_atomic_t pending_signal = 0;

static void record_signal(int sig) {
  if (!pending_signal) pending_signal = sig;
}

void lfs_signals_install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = record_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

int lfs_signal_pending(void) { return (int)pending_signal; }

void lfs_signal_clear(void) { pending_signal = 0; }
