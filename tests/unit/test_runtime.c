/* test_runtime.c: monotonic timers and the stop-signal flag (SIGUSR1, SIGTERM:
 * recorded, first one wins, cleared on request, the process keeps running). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "lfs/timer.h"

static void test_timer_is_monotonic_and_advances(void **state) {
  (void)state;
  double last = lfs_now();
  for (int i = 0; i < 100000; i++) {
    double t = lfs_now();
    assert_true(t >= last);
    last = t;
  }
  const double t0 = lfs_now();
  const struct timespec nap = {0, 20 * 1000 * 1000};
  nanosleep(&nap, NULL);
  const double dt = lfs_now() - t0;
  assert_true(dt >= 0.019 && dt < 2.0);
}

static void test_signals_set_the_flag(void **state) {
  (void)state;
  lfs_signals_install();
  lfs_signal_clear();
  assert_int_equal(lfs_signal_pending(), 0);
  raise(SIGUSR1);
  assert_int_equal(lfs_signal_pending(), SIGUSR1);
  raise(SIGTERM); /* the first signal is the one reported */
  assert_int_equal(lfs_signal_pending(), SIGUSR1);
  lfs_signal_clear();
  assert_int_equal(lfs_signal_pending(), 0);
  raise(SIGTERM);
  assert_int_equal(lfs_signal_pending(), SIGTERM);
  lfs_signal_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_timer_is_monotonic_and_advances),
      cmocka_unit_test(test_signals_set_the_flag),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
