# SPDX-License-Identifier: LGPL-2.1-or-later
"""
What the benchmark scripts of tests/bench/ share: progress lines on stderr, the p99 of a
list, the median of per-round ratios and the JSON lines they append to bench.py's output.
"""

import json
import statistics
import sys

# The QEMU targets of README.md "Performance": the name of a pair (its _root and _service
# figures) → the highest median of the per-round ratios service / root.
QEMU_TARGETS = {
    'qemu16': 1.10,             # the 16-disk snapshot transaction
    'qemu32': 1.15,             # the 32-disk snapshot transaction
    'qemu32_start': 1.15,       # the start of a QEMU with 32 disks (each first open cold)
}


def logger(prog):
    """A log(msg) that writes 'PROG: msg' to stderr at once (stdout carries the results)."""
    def log(msg):
        sys.stderr.write('%s: %s\n' % (prog, msg))
        sys.stderr.flush()
    return log


def p99(values):
    """The 99th percentile of values, the nearest sample (the largest of fewer than 100)."""
    s = sorted(values)
    return s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]


def pair_ratio_median(numerators, denominators):
    """The median of numerators[i] / denominators[i]: each value against the one measured in
    the same round, so that a slow stretch of the machine shifts both sides of a ratio."""
    return statistics.median(n / d for n, d in zip(numerators, denominators))


def append_records(path, records):
    """Append one JSON object per record to path (bench.py's output file)."""
    with open(path, 'a') as f:
        for r in records:
            f.write(json.dumps(r) + '\n')
