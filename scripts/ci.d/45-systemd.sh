#!/usr/bin/env bash
# CI: the amd64 .deb under a real systemd (make systemd-test,
# docs/perf/packaging.md): a Debian 12 guest with systemd as PID 1 under
# qemu installs, upgrades, removes, reinstalls and purges the package and
# checks the service at each step. The root file system is cached in
# ~/.cache/tcu-agent (a cold build is a debootstrap, about a minute here);
# the kernel comes from 30-vmtest.sh's cache in .vm/. Measured here 6.5
# minutes with a cold root file system cache, 5 warm, most of it the two
# guest boots under TCG (docs/perf/packaging.md).
#
# The check fresh-install-no-claim-active needs the agent to wait for a
# missing claim instead of exiting (issue 12, branch lifecycle); it is
# expected to pass once that is merged. SYSTEMD_TEST_XFAIL names checks
# to report as expected failures instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec scripts/systemd-test.sh amd64
