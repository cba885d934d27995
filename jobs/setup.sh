#!/bin/bash
# setup.sh: installs lfsearch's Debian packages when missing, then configures and
# builds it in _build/ (or $LFS_BUILD; extra configure flags in $LFS_CONFIGURE_FLAGS,
# CFLAGS for make in $LFS_CFLAGS). Sourced by jobs/demo.sh, run by tests/run-all.sh;
# safe to run again (it only does what is missing or out of date).
set -euo pipefail

LFS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LFS_BUILD=${LFS_BUILD:-$LFS_ROOT/_build}
LFS_PACKAGES="gcc make autoconf automake libtool autoconf-archive pkg-config
  openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools libopenblas-dev
  libcmocka-dev libinih-dev libjpeg62-turbo-dev libpng-dev python3"

# Open MPI refuses root without these; 2-core machines need oversubscription for 4 ranks.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1

# The analysis scripts (analysis/report) need these; installed without the
# packages they merely recommend (a GUI toolkit among them).
LFS_PY_PACKAGES="python3-numpy python3-h5py python3-matplotlib"

# Only the test suite needs these (tests/run-all.sh sets LFS_WITH_TEST_PACKAGES=1):
# a private Slurm for the Slurm test, and a C++ compiler for tests/gpu/test_cuda_emulated
# (the CUDA kernels on the host); each test skips, saying why, when its packages are missing.
LFS_TEST_PACKAGES="slurmctld slurmd slurm-client munge g++"

lfs_missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

lfs_install_packages() {
  local missing python optional
  missing=$(lfs_missing_packages $LFS_PACKAGES)
  python=$(lfs_missing_packages $LFS_PY_PACKAGES)
  optional=
  [ "${LFS_WITH_TEST_PACKAGES:-0}" = 1 ] && optional=$(lfs_missing_packages $LFS_TEST_PACKAGES)
  [ -z "$missing$python$optional" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    [ -z "$missing$python" ] && { echo "setup: not root: not installing $(echo $optional) (their test will skip)"; return 0; }
    echo "setup: missing Debian packages: $(echo $missing $python)" >&2
    echo "setup: run as root, or: sudo apt-get install $(echo $missing $python)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if [ -n "$missing" ]; then
    echo "setup: installing $(echo $missing)"
    apt-get install -y -qq $missing >/dev/null
  fi
  if [ -n "$python" ]; then
    echo "setup: installing $(echo $python)"
    apt-get install -y -qq --no-install-recommends $python >/dev/null
  fi
  if [ -n "$optional" ]; then
    echo "setup: installing $(echo $optional) (for the tests)"
    apt-get install -y -qq --no-install-recommends $optional >/dev/null ||
      echo "setup: could not install $(echo $optional): their test will skip"
  fi
}

lfs_build() {
  cd "$LFS_ROOT"
  if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
    echo "setup: autoreconf"
    autoreconf -fi >/dev/null 2>&1 || autoreconf -fi
  fi
  mkdir -p "$LFS_BUILD"
  cd "$LFS_BUILD"
  if [ ! -f Makefile ]; then
    echo "setup: configure ${LFS_CONFIGURE_FLAGS:-}"
    "$LFS_ROOT/configure" ${LFS_CONFIGURE_FLAGS:-} > configure.out || { cat configure.out; exit 1; }
    sed -n '/^lfsearch .* configuration/,$p' configure.out
  fi
  echo "setup: make"
  make -j"$(nproc)" ${LFS_CFLAGS:+CFLAGS="$LFS_CFLAGS"} > make.out 2>&1 || { cat make.out; exit 1; }
  cd "$LFS_ROOT"
}

# The synthetic faces of the measured tables (jobs/loss_table.sh,
# jobs/search_table.sh): 300 identities x 20 images at 32x32 for training, 1000
# validation pairs (the reward and the per-epoch check) and 6000 test pairs
# (the LFW size: one run's accuracy then carries a sampling error of about 0.3
# points) of held-out identities. Made once.
LFS_TABLE_DATA=data/synth32-table
lfs_table_data() {
  [ -f "$LFS_ROOT/$LFS_TABLE_DATA/test_pairs.h5" ] ||
    "$LFS_BUILD/lfsearch" synth --out "$LFS_ROOT/$LFS_TABLE_DATA" --identities 300 \
      --images-per-identity 20 --size 32 --seed 1 --val-pairs 1000 --test-pairs 6000
}

# "E1,E2": the tables' learning-rate steps at 2/3 and 11/12 of `epochs`.
lfs_table_milestones() { echo "$(( $1 * 2 / 3 )),$(( $1 * 11 / 12 ))"; }

lfs_install_packages
lfs_build
