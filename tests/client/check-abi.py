#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The exported ABI of a shared library equals its version script: every symbol the .sym file
lists is exported by the .so (defined, in the node the script puts it in), and the .so exports
nothing else — no helper escaped `local: *;`.

Usage: check-abi.py LIBRARY.so VERSION-SCRIPT.sym PROJECT-VERSION.  Output: TAP.
"""

import re
import subprocess
import sys


def parse_sym(path):
    """{symbol: node} from a GNU ld version script (comments, global/local, nodes)."""
    text = open(path, encoding='utf-8').read()
    text = re.sub(r'/\*.*?\*/', '', text, flags=re.S)
    text = re.sub(r'#[^\n]*', '', text)
    syms = {}
    for node, body in re.findall(r'([A-Za-z0-9_.]+)\s*\{(.*?)\}\s*[A-Za-z0-9_.]*\s*;', text, re.S):
        scope = 'global'
        for item in body.split(';'):
            item = item.strip()
            if not item:
                continue
            m = re.match(r'^(global|local)\s*:\s*(.*)$', item, re.S)
            if m:
                scope, item = m.group(1), m.group(2).strip()
                if not item:
                    continue
            if scope == 'global':
                syms[item] = node
    return syms


def exported(lib):
    """{symbol: version} of the defined dynamic symbols (nm -D --defined-only)."""
    out = subprocess.run(['nm', '-D', '--defined-only', lib], check=True, capture_output=True,
                         text=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        kind, name = parts[1], parts[2]
        if kind == 'A':  # the version nodes themselves
            continue
        name, _, version = name.partition('@')
        syms[name] = version.lstrip('@') or None
    return syms


def version_tuple(v):
    return tuple(int(x) for x in v.split('.'))


def main():
    if len(sys.argv) != 4:
        sys.exit('usage: check-abi.py LIBRARY VERSION-SCRIPT PROJECT-VERSION')
    lib, sym, project_version = sys.argv[1:]
    want = parse_sym(sym)
    have = exported(lib)
    tests = []
    # a node names the release that first ships it: none can be later than this version
    late = sorted('%s (project version %s)' % (node, project_version)
                  for node in set(want.values())
                  if not re.search(r'_(\d+(?:\.\d+)*)$', node)
                  or version_tuple(re.search(r'_(\d+(?:\.\d+)*)$', node).group(1))
                  > version_tuple(project_version))
    tests.append(('every version node names a release up to %s' % project_version, not late,
                  late))
    tests.append(('the version script lists symbols', bool(want), []))
    missing = sorted(set(want) - set(have))
    tests.append(('every symbol of %s is exported' % sym, not missing,
                  ['missing: ' + s for s in missing]))
    extra = sorted(set(have) - set(want))
    tests.append(('nothing else is exported', not extra, ['not in the script: ' + s for s in extra]))
    wrong = sorted('%s@%s (script: %s)' % (s, have[s], want[s]) for s in set(want) & set(have)
                   if have[s] != want[s])
    tests.append(('every symbol carries its version node', not wrong, wrong))
    print('1..%d' % len(tests))
    failed = 0
    for i, (desc, ok, details) in enumerate(tests, 1):
        print('%s %d - %s' % ('ok' if ok else 'not ok', i, desc))
        for d in details:
            print('# ' + d)
        failed += not ok
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
