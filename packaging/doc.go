// Package packaging holds no code: it is the home of the files that turn
// tcu-agent into an installable service (the systemd unit, sysusers.d and
// tmpfiles.d entries, the nfpm package definition, maintainer scripts and a
// systemd-networkd example) and of the tests that check them:
//
//   - the unit passes `systemd-analyze verify` without a message and
//     `systemd-analyze security --offline=true` rates its exposure ≤ 2.0;
//   - sysusers.d/tmpfiles.d create the user and directories in a scratch root;
//   - the built .deb/.rpm packages (make package) contain what they should,
//     and the amd64 .deb installs into and removes from a throwaway root with
//     its maintainer scripts running;
//   - the real agent binary, run as the unit runs it against a fake notify
//     socket, sends READY=1, STATUS= and periodic WATCHDOG=1, answers
//     `tcu-agent status` and serves valid Prometheus text (not in -short);
//   - scripts/can-setup.sh and scripts/vcan-setup.sh issue the right ip(8)
//     commands (dry run).
//
// Tests needing a tool that is absent (systemd-analyze, dpkg-deb, rpm) or
// packages that were not built skip with a message; scripts/ci.d/40-packaging.sh
// installs the tools, builds the packages and sets TCU_REQUIRE_PACKAGES=1 so
// that nothing is skipped in CI.
package packaging
