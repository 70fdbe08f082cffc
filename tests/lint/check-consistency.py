#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Names spelled in more than one file agree:

 * polkit action ids: client/common/ia-common.h (IA_ACTION_*), policy/*.policy, the man page;
 * every $(key) in a .policy message is a detail that image-accessd passes with EVERY check of
   that action (DETAILS below): for a missing key polkit logs "Error substituting value" and
   shows "$(key)" to the person being asked;
 * the defaults: open-image "yes" for any/inactive/active, every other action "auth_admin",
   and no *_keep anywhere (a retained authorization ignores the details);
 * configuration keys: the sample data/image-access.conf, the man page, and the parser
   daemon/config.c (each documented key is spelled there as a string);
 * the license: every SPDX-License-Identifier in the tree, meson's project(license:) and the
   text in LICENSE name the same license.

Usage: check-consistency.py SOURCE_ROOT.  Output: TAP.
"""

import os
import re
import shlex
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import plan, result  # noqa: E402

# The details each check carries; the list in policy/*.policy's header comment says the same.
# "list" is called by ListGuests without any detail, so it can rely on none.
DETAILS = {
    "open-image": {"guest", "image", "mode", "guest-uuid"},
    "register-guest": {"guest"},
    "unregister-guest": {"guest"},
    "bind-process": {"guest"},
    "grant-image": {"guest", "image", "mode"},
    "revoke-image": {"guest", "image"},
    "list": set(),
}
PREFIX = "org.example.imageaccess."
MAN_PAGE = "data/image-accessd.8"
SAMPLE_CONF = "data/image-access.conf"
CONFIG_PARSER = "daemon/config.c"
# SPDX id → lines its full text starts with (as in LICENSE)
LICENSE_TEXTS = {
    "LGPL-2.1-or-later": ["GNU LESSER GENERAL PUBLIC LICENSE", "Version 2.1, February 1999"],
}



def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def man_text(src):
    """The man page with roff escapes for '-' undone, so names can be searched for."""
    return src.replace("\\-", "-").replace("\\c", "")


def roff_to_text(lines):
    """Plain text of man(7) source lines: font macros resolved, other requests dropped."""
    words = []
    for line in lines.splitlines():
        m = re.match(r"^\.(BR|RB|IR|RI|BI|IB|B|I) ?(.*)$", line)
        if m:
            args = [a.strip('"') for a in shlex.split(m.group(2))]
            # .B and .I set their words with spaces, the alternating macros without.
            words.append((" " if m.group(1) in ("B", "I") else "").join(args))
        elif not line.startswith("."):
            words.append(line)
    return re.sub(r"\s+", " ", " ".join(words))


def main():
    if len(sys.argv) != 2:
        print("usage: check-consistency.py SOURCE_ROOT", file=sys.stderr)
        return 2
    os.chdir(sys.argv[1])

    header_ids = set(re.findall(r'#define\s+IA_ACTION_\w+\s+"([^"]+)"',
                                read("client/common/ia-common.h")))
    result(bool(header_ids), "client/common/ia-common.h defines IA_ACTION_* ids")
    result(header_ids == {PREFIX + a for a in DETAILS},
           "the test's DETAILS table covers exactly the actions of ia-common.h",
           ["ia-common.h: %s" % sorted(header_ids)])

    policies = sorted(f for f in os.listdir("policy") if f.endswith(".policy"))
    policy_ids = set()
    for p in policies:
        root = ET.parse(os.path.join("policy", p)).getroot()
        for action in root.findall("action"):
            aid = action.get("id")
            policy_ids.add(aid)
            short = aid[len(PREFIX):] if aid.startswith(PREFIX) else aid
            carried = DETAILS.get(short, set())

            for message in action.findall("message"):
                used = set(re.findall(r"\$\(([^)]*)\)", message.text or ""))
                missing = used - carried
                result(not missing, "%s: message uses only details every check carries" % aid,
                       ["not always passed: %s" % sorted(missing)] if missing else [])

            defaults = action.find("defaults")
            got = {c.tag: (c.text or "").strip() for c in defaults} if defaults is not None \
                else {}
            want_value = "yes" if short == "open-image" else "auth_admin"
            want = {k: want_value for k in ("allow_any", "allow_inactive", "allow_active")}
            result(got == want, "%s: defaults are %s for any/inactive/active" % (aid, want_value),
                   ["got %s" % got])

    result(policy_ids == header_ids, "policy action ids equal ia-common.h's",
           ["only in policy: %s" % sorted(policy_ids - header_ids),
            "only in ia-common.h: %s" % sorted(header_ids - policy_ids)])

    man = man_text(read(MAN_PAGE))
    missing = sorted(a for a in header_ids if a not in man)
    result(not missing, "%s names every polkit action" % MAN_PAGE, missing)

    # Configuration keys: "#Key=value" or "Key=value" lines under [Group] headers.
    sample = {}
    group = None
    for line in read(SAMPLE_CONF).splitlines():
        m = re.match(r"^\[(\w+)\]$", line)
        if m:
            group = m.group(1)
            continue
        m = re.match(r"^#?([A-Z]\w*)=(.*)$", line)
        if m and group:
            sample[(group, m.group(1))] = m.group(2)
    result(bool(sample), "%s lists configuration keys" % SAMPLE_CONF)

    uncommented = [l for l in read(SAMPLE_CONF).splitlines() if re.match(r"^[A-Z]\w*=", l)]
    result(not uncommented, "%s: every key is commented out (defaults only)" % SAMPLE_CONF,
           uncommented)

    man_keys = set()
    group = None
    for line in man.splitlines():
        m = re.match(r"^\.SS \[(\w+)\]$", line)
        if m:
            group = m.group(1)
            continue
        if line.startswith(".SH"):
            group = None
        m = re.match(r"^\.BI ([A-Z]\w*)= ", line)
        if m and group:
            man_keys.add((group, m.group(1)))
    result(man_keys == set(sample), "%s documents exactly the keys of %s" % (MAN_PAGE,
                                                                            SAMPLE_CONF),
           ["only in the man page: %s" % sorted(man_keys - set(sample)),
            "only in the sample: %s" % sorted(set(sample) - man_keys)])

    for (g, k), default in sorted(sample.items()):
        # The man page says "Default: VALUE." in the key's paragraph.
        para = re.search(r"^\.BI %s= .*?(?=^\.(?:TP|SS|SH))" % re.escape(k), man, re.M | re.S)
        text = roff_to_text(para.group(0)) if para else ""
        ok = ("Default: %s." % default) in text
        result(ok, "[%s] %s: man page gives the sample's default %s" % (g, k, default),
               [] if ok else [text[:300]])

    if os.path.exists(CONFIG_PARSER):
        parser = read(CONFIG_PARSER)
        unknown = sorted("[%s] %s" % gk for gk in sample
                         if '"%s"' % gk[0] not in parser or '"%s"' % gk[1] not in parser)
        result(not unknown, "every sample key is spelled in %s" % CONFIG_PARSER, unknown)

        # Compiled-in defaults of the numeric keys: the parser's table maps a key to a field,
        # "{ "Limits", "MaxGuests", offsetof(Config, limits.max_guests), ...", and the field
        # is initialized as ".max_guests = 16384" in config.c or registry.h.  Only checked
        # where both can be found, so a refactoring of the C side skips instead of failing.
        inits = parser + (read("daemon/registry.h") if os.path.exists("daemon/registry.h")
                          else "")
        for g, k, field in re.findall(
                r'\{\s*"(\w+)",\s*"(\w+)",\s*offsetof\(Config,\s*([\w.]+)\)', parser):
            init = re.search(r"\.%s\s*=\s*(\d+)\s*," % re.escape(field.split(".")[-1]),
                             inits)
            if (g, k) not in sample or not init:
                continue
            result(init.group(1) == sample[(g, k)],
                   "[%s] %s: sample default %s is the compiled-in one" % (g, k, sample[(g, k)]),
                   ["%s initializes %s to %s" % (CONFIG_PARSER, field, init.group(1))])

    check_license()
    check_references()
    return plan()


def spdx_ids():
    """{id: [files]} of the SPDX-License-Identifier lines below the current directory,
    leaving out .git and build directories (those with meson-private/)."""
    ids = {}
    for top, dirs, files in os.walk("."):
        dirs[:] = [d for d in dirs if d != ".git"
                   and not os.path.isdir(os.path.join(top, d, "meson-private"))]
        for fn in files:
            path = os.path.join(top, fn)[2:]
            try:
                with open(path, encoding="utf-8") as f:
                    head = f.read(2000)
            except (UnicodeDecodeError, OSError):
                continue
            for m in re.finditer(r"SPDX-License-Identifier: ([A-Za-z0-9.+-]+)", head):
                ids.setdefault(m.group(1), []).append(path)
    return ids


def text_files():
    """Paths of the text files below the current directory (not .git, build directories,
    fuzz corpora), with their contents."""
    for top, dirs, files in os.walk("."):
        dirs[:] = [d for d in dirs if d not in (".git", "corpus")
                   and not os.path.isdir(os.path.join(top, d, "meson-private"))]
        for fn in files:
            path = os.path.join(top, fn)[2:]
            try:
                with open(path, encoding="utf-8") as f:
                    yield path, f.read()
            except (UnicodeDecodeError, OSError):
                continue


def check_references():
    """The docs carry their own facts: nothing names a design file outside this repository,
    and every relative link of a Markdown file leads to a file that is here."""
    outside = re.compile(r"\bshared/(design|seed)/|\bARCHITECTURE\.md\b")
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    found, broken = [], []
    for path, text in text_files():
        if path == "tests/lint/check-consistency.py":
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if outside.search(line):
                found.append("%s:%d: %s" % (path, n, line.strip()))
        if path.endswith(".md"):
            for target in link.findall(text):
                if "://" in target or target.startswith("mailto:"):
                    continue
                if not os.path.exists(os.path.join(os.path.dirname(path), target)):
                    broken.append("%s: %s" % (path, target))
    result(not found, "no reference to design files outside the repository", found)
    result(not broken, "every relative link in a Markdown file resolves", broken)


def check_license():
    ids = spdx_ids()
    project = re.search(r"^project\((?:.|\n)*?license\s*:\s*'([^']+)'", read("meson.build"),
                        re.M)
    project = project.group(1) if project else None
    result(set(ids) == {project}, "every SPDX-License-Identifier is meson's project license "
           "%s" % project, ["%s: %s" % (i, ", ".join(sorted(ids[i])[:5])) for i in sorted(ids)
                            if i != project])
    text = read("LICENSE") if os.path.exists("LICENSE") else ""
    head = [line.strip() for line in text.splitlines()[:5]]
    want = LICENSE_TEXTS.get(project, ["(no known text for %s)" % project])
    result(all(w in head for w in want), "LICENSE is the text of %s" % project,
           ["LICENSE starts with %r, want %r" % (head, want)])


if __name__ == "__main__":
    sys.exit(main())
