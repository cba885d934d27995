/* timer.h: monotonic wall-clock time and the stop-signal flag. */
#ifndef LFS_TIMER_H
#define LFS_TIMER_H

/* Seconds from an arbitrary fixed point, monotonic (CLOCK_MONOTONIC). */
double lfs_now(void);

/* Installs handlers for SIGUSR1 and SIGTERM that only record the signal. */
void lfs_signals_install(void);
/* The first stop signal received (SIGUSR1 or SIGTERM), or 0. */
int lfs_signal_pending(void);
/* Forgets a received signal (tests, and after a checkpoint has been written). */
void lfs_signal_clear(void);

#endif
