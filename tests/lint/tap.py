# SPDX-License-Identifier: LGPL-2.1-or-later
"""TAP output for the lint scripts: result() per check, plan() at the end."""

_count = 0
_failed = 0


def result(ok, desc, details=()):
    """Print one TAP line; the details of a failure follow as '# ' comments."""
    global _count, _failed
    _count += 1
    print("%s %d - %s" % ("ok" if ok else "not ok", _count, desc))
    if not ok:
        for line in details:
            print("# " + line)
        _failed += 1


def plan():
    """Print the plan; returns the exit status (1 when a check failed)."""
    print("1..%d" % _count)
    return 1 if _failed else 0
