#!/usr/bin/env bash
# tally.sh RESULTS... — count the per-cut rows of scripts/powercut.sh
# (POWERCUT_RESULTS) by arch, file system, policy and applied mode:
# cuts, PASS, LOSS (sync=none only), FAIL, cuts with a torn page, and
# the mean number of writes pending at the cut.
set -euo pipefail
printf "%-6s %-13s %-7s %-8s %5s %5s %5s %5s %5s %8s\n" arch fs sync mode cuts pass loss fail torn pending
awk '
{
	arch = fs = pol = mode = v = ""; pend = 0; torn = 0
	for (i = 1; i <= NF; i++) {
		if ($i ~ /^arch=/) arch = substr($i, 6)
		else if ($i ~ /^fs=/) fs = substr($i, 4)
		else if ($i ~ /^sync=/) pol = substr($i, 6)
		else if ($i ~ /^mode=/ && mode == "") mode = substr($i, 6)
		else if ($i ~ /^pending=/) pend = substr($i, 9) + 0
		else if ($i ~ /^torn_op=/) torn = 1
		else if ($i == "POWERCUT") v = $(i + 1)
	}
	k = arch " " fs " " pol " " mode
	n[k]++; p[k] += pend; t[k] += torn
	if (v == "PASS") pass[k]++; else if (v == "LOSS") loss[k]++; else fail[k]++
}
END {
	for (k in n) {
		split(k, f, " ")
		printf "%-6s %-13s %-7s %-8s %5d %5d %5d %5d %5d %8.1f\n", f[1], f[2], f[3], f[4], n[k], pass[k], loss[k], fail[k], t[k], p[k] / n[k]
	}
}' "$@" | sort
