#!/usr/bin/env bash
# tally.sh RESULTS... — count the per-cut rows of scripts/powercut.sh
# (POWERCUT_RESULTS) by arch, file system, disk (replay, or the live model:
# hostile, cache, file), policy and applied mode:
# cuts, PASS, PASS-AFTER-FSCK (the kernel would not mount the cut;
# e2fsck -fy repaired a copy, which passed), LOSS (sync=none only, with
# or without fsck), FAIL, cuts that did not mount before e2fsck
# (unmount), cuts with a torn page, and the mean number of writes pending
# at the cut.
set -euo pipefail
printf "%-6s %-13s %-7s %-7s %-8s %5s %5s %5s %5s %5s %7s %5s %8s\n" arch fs disk sync mode cuts pass fsck loss fail unmount torn pending
awk '
{
	arch = fs = pol = mode = v = ""; disk = "replay"; pend = 0; torn = 0; um = 0
	for (i = 1; i <= NF; i++) {
		if ($i ~ /^arch=/) arch = substr($i, 6)
		else if ($i ~ /^fs=/) fs = substr($i, 4)
		else if ($i ~ /^idle=/) fs = fs "+" $i # POWERCUT_IDLE runs: their own rows
		else if ($i ~ /^sync=/) pol = substr($i, 6)
		else if ($i ~ /^live=/) disk = substr($i, 6)
		else if ($i ~ /^mode=/ && mode == "") mode = substr($i, 6)
		else if ($i ~ /^pending=/) pend = substr($i, 9) + 0
		else if ($i ~ /^torn_op=/) torn = 1
		else if ($i ~ /^unmountable=/) um = 1
		else if ($i == "POWERCUT") { v = $(i + 1); break }
	}
	k = arch " " fs " " disk " " pol " " mode
	n[k]++; p[k] += pend; t[k] += torn; u[k] += um
	if (v == "PASS") pass[k]++
	else if (v == "PASS-AFTER-FSCK") fsck[k]++
	else if (v == "LOSS" || v == "LOSS-AFTER-FSCK") loss[k]++
	else fail[k]++
}
END {
	for (k in n) {
		split(k, f, " ")
		printf "%-6s %-13s %-7s %-7s %-8s %5d %5d %5d %5d %5d %7d %5d %8.1f\n", f[1], f[2], f[3], f[4], f[5], n[k], pass[k], fsck[k], loss[k], fail[k], u[k], t[k], p[k] / n[k]
	}
}' "$@" | sort
