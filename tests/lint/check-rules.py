#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
Checks the example polkit .rules files.  polkitd 122 runs rules with duktape, an ECMAScript 5
engine; a file it cannot compile is skipped with one log line ("Error compiling script") and
the defaults apply, so a mistake here fails silently on a real host.  The authoritative check
is the integration tests, where the real polkitd loads the files.  This is the cheap one:

 1. static: outside comments and string literals, no ES2015 syntax: "let", "const", "=>",
    template strings (backticks).  duktape happens to accept "const" as an extension, but
    other ES5 engines (mozjs-based polkit) differ, and the project writes ES5.
 2. compile: the file is compiled as global code by duktape itself (libduktape.so.207, the
    library polkitd links), loaded with ctypes the way polkitd does it.  Skipped when the
    library is missing.
 3. behaviour: each file runs in duktape under a small stand-in for polkit's JavaScript
    environment (polkit.addRule, polkit.Result, action.lookup(), subject.isInGroup(), the
    first rule returning a result wins), and the CASES below are checked: that the examples
    do what their header comments promise.  Also skipped without the library.

Usage: check-rules.py RULES_DIR.  Output: TAP.
"""

import ctypes
import ctypes.util
import json
import os
import re
import sys

ACTION = "org.example.imageaccess."


def strip_comments_and_strings(src):
    """Returns @src with comments removed and string literals emptied (kept as "")."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("/*", i):
            j = src.find("*/", i + 2)
            if j < 0:
                raise ValueError("unterminated /* comment")
            out.append(" " + "\n" * src.count("\n", i, j))
            i = j + 2
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif c in "'\"":
            j = i + 1
            while j < n and src[j] != c:
                if src[j] == "\\":
                    j += 1
                elif src[j] == "\n":
                    raise ValueError("newline in string literal")
                j += 1
            if j >= n:
                raise ValueError("unterminated string literal")
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


ES2015 = [
    (re.compile(r"\blet\b"), "'let' (use var)"),
    (re.compile(r"\bconst\b"), "'const' (use var)"),
    (re.compile(r"=>"), "arrow function (use function)"),
    (re.compile(r"`"), "template string (use + concatenation)"),
    (re.compile(r"\bclass\b"), "'class'"),
    (re.compile(r"\.\.\."), "spread/rest '...'"),
]


def static_problems(src):
    try:
        code = strip_comments_and_strings(src)
    except ValueError as e:
        return [str(e)]
    problems = []
    for lineno, line in enumerate(code.splitlines(), 1):
        for rx, what in ES2015:
            if rx.search(line):
                problems.append("line %d: %s" % (lineno, what))
    return problems


# --- duktape -------------------------------------------------------------------------------
# Flag values of duktape 2.x (duktape.h); the self-test in Duktape.__init__ proves them.
DUK_COMPILE_EVAL = 1 << 3
DUK_COMPILE_SAFE = 1 << 7
DUK_COMPILE_NOSOURCE = 1 << 9
DUK_COMPILE_NOFILENAME = 1 << 11


class Duktape:
    def __init__(self, lib):
        d = self.d = lib
        d.duk_create_heap.restype = ctypes.c_void_p
        d.duk_create_heap.argtypes = [ctypes.c_void_p] * 5
        d.duk_destroy_heap.argtypes = [ctypes.c_void_p]
        d.duk_compile_raw.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                      ctypes.c_uint]
        d.duk_compile_raw.restype = ctypes.c_int
        d.duk_eval_raw.argtypes = d.duk_compile_raw.argtypes
        d.duk_eval_raw.restype = ctypes.c_int
        d.duk_pcall.argtypes = [ctypes.c_void_p, ctypes.c_int]
        d.duk_pcall.restype = ctypes.c_int
        d.duk_safe_to_lstring.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        d.duk_safe_to_lstring.restype = ctypes.c_char_p
        d.duk_pop.argtypes = [ctypes.c_void_p]
        d.duk_pop.restype = None
        self.ctx = None
        # Self-test: ES5 compiles, ES2015 does not, eval returns values.
        with self:
            if self.compile("var a = [1].indexOf(1);") is not None:
                raise RuntimeError("duktape self-test: ES5 code did not compile")
            if self.compile("var f = (a) => a;") is None:
                raise RuntimeError("duktape self-test: an arrow function compiled")
            if self.eval("JSON.stringify([1 + 2])") != (True, "[3]"):
                raise RuntimeError("duktape self-test: eval failed")

    def __enter__(self):
        self.ctx = self.d.duk_create_heap(None, None, None, None, None)
        if not self.ctx:
            raise RuntimeError("duk_create_heap failed")
        return self

    def __exit__(self, *exc):
        self.d.duk_destroy_heap(self.ctx)
        self.ctx = None

    def _top(self):
        s = self.d.duk_safe_to_lstring(self.ctx, -1, None)
        return s.decode("utf-8", "replace") if s is not None else ""

    def compile(self, src):
        """Compiles @src as global code, as polkitd does. Returns None or the error text."""
        b = src.encode("utf-8")
        r = self.d.duk_compile_raw(self.ctx, b, len(b),
                                   DUK_COMPILE_SAFE | DUK_COMPILE_NOSOURCE |
                                   DUK_COMPILE_NOFILENAME)
        err = self._top() if r != 0 else None
        self.d.duk_pop(self.ctx)
        return err

    def run(self, src):
        """Compiles and calls @src as global code (what polkitd does with a rules file).
        Returns None or the error text."""
        b = src.encode("utf-8")
        r = self.d.duk_compile_raw(self.ctx, b, len(b),
                                   DUK_COMPILE_SAFE | DUK_COMPILE_NOSOURCE |
                                   DUK_COMPILE_NOFILENAME)
        if r != 0:
            err = self._top()
            self.d.duk_pop(self.ctx)
            return err
        r = self.d.duk_pcall(self.ctx, 0)
        err = self._top() if r != 0 else None
        self.d.duk_pop(self.ctx)
        return err

    def eval(self, src):
        b = src.encode("utf-8")
        r = self.d.duk_eval_raw(self.ctx, b, len(b),
                                DUK_COMPILE_EVAL | DUK_COMPILE_SAFE | DUK_COMPILE_NOSOURCE |
                                DUK_COMPILE_NOFILENAME)
        v = self._top()
        self.d.duk_pop(self.ctx)
        return (r == 0, v)


def load_duktape():
    for name in ("libduktape.so.207", ctypes.util.find_library("duktape")):
        if not name:
            continue
        try:
            return Duktape(ctypes.CDLL(name)), None
        except OSError:
            continue
        except (RuntimeError, AttributeError) as e:
            return None, str(e)
    return None, "libduktape not found (package libduktape207, a dependency of polkitd)"


# A stand-in for the parts of polkit's JavaScript environment (polkitd's init.js) that rules
# use.  Details are read with action.lookup(), which gives undefined for a missing key.
PRELUDE = r"""
var polkit = {
        Result: { NO: "no", YES: "yes", AUTH_SELF: "auth_self", AUTH_SELF_KEEP: "auth_self_keep",
                  AUTH_ADMIN: "auth_admin", AUTH_ADMIN_KEEP: "auth_admin_keep",
                  NOT_HANDLED: null },
        _ruleFuncs: [],
        _log: [],
        addRule: function (f) { this._ruleFuncs.push(f); },
        addAdminRule: function (f) { },
        log: function (m) { this._log.push(String(m)); },
        spawn: function () { throw new Error("polkit.spawn() called"); },
        _runRules: function (action, subject) {
                var n, r;
                for (n = 0; n < this._ruleFuncs.length; n++) {
                        r = this._ruleFuncs[n](action, subject);
                        if (r)
                                return r;
                }
                return null;
        }
};
function __case(id, details, user, groups, local, active) {
        var k;
        var action = { id: id, lookup: function (name) { return this["_detail_" + name]; } };
        var subject = { user: user, groups: groups, local: local, active: active, pid: 4242,
                        seat: local ? "seat0" : "", session: "", system_unit: "",
                        isInGroup: function (g) { return this.groups.indexOf(g) >= 0; },
                        isInNetGroup: function (g) { return false; } };
        for (k in details)
                action["_detail_" + k] = details[k];
        return polkit._runRules(action, subject);
}
"""

OPERATOR = {"user": "vmm", "groups": ["vmm", "ia-operators"], "local": False, "active": False}
ALICE = {"user": "alice", "groups": ["alice"], "local": True, "active": True}
ALICE_SSH = {"user": "alice", "groups": ["alice"], "local": False, "active": False}
ALICE_BOB = {"user": "alice-bob", "groups": ["alice-bob"], "local": True, "active": True}
NOBODY = {"user": "libvirt-qemu", "groups": ["kvm"], "local": False, "active": False}

MANAGER_ACTIONS = ["register-guest", "unregister-guest", "bind-process", "grant-image",
                   "revoke-image", "list"]

# (action suffix, details, subject, expected result: "yes", "no" or None = not handled)
CASES = {
    "50-image-access-operators.rules":
        [(a, {"guest": "vm1", "image": "/srv/vm1.img", "mode": "read-write"}, OPERATOR, "yes")
         for a in MANAGER_ACTIONS] +
        [(a, {"guest": "vm1"}, ALICE, None) for a in MANAGER_ACTIONS] + [
        ("list", {}, OPERATOR, "yes"),
        ("open-image", {"guest": "vm1", "image": "/srv/vm1.img", "mode": "read-write",
                        "guest-uuid": ""}, OPERATOR, None),
        ("open-image", {"guest": "vm1", "image": "/srv/vm1.img", "mode": "read-only",
                        "guest-uuid": ""}, NOBODY, None),
    ],
    "50-image-access-desktop.rules":
        [(a, {"guest": "alice:win11", "image": "/home/alice/VMs/win11.qcow2",
              "mode": "create"}, ALICE, "yes") for a in MANAGER_ACTIONS] + [
        ("register-guest", {"guest": "alice:win11"}, ALICE_SSH, None),
        ("register-guest", {"guest": "bob:vm"}, ALICE, None),
        ("register-guest", {"guest": "alice:"}, ALICE, None),
        ("register-guest", {"guest": "alice"}, ALICE, None),
        ("register-guest", {"guest": "alice-vm"}, ALICE, None),
        # alice must not own the guests of user alice-bob, and the other way round
        ("register-guest", {"guest": "alice-bob:vm"}, ALICE, None),
        ("register-guest", {"guest": "alice-bob:vm"}, ALICE_BOB, "yes"),
        ("register-guest", {"guest": "alice:vm"}, ALICE_BOB, None),
        ("grant-image", {"guest": "alice:w", "image": "/etc/shadow", "mode": "read-only"},
         ALICE, "no"),
        ("grant-image", {"guest": "alice:w", "image": "/home/alicevil/x.img",
                         "mode": "read-only"}, ALICE, "no"),
        ("grant-image", {"guest": "alice:w", "image": "/home/alice", "mode": "read-only"},
         ALICE, "no"),
        ("grant-image", {"guest": "alice:w", "image": "/home/alice/", "mode": "read-only"},
         ALICE, "no"),
        ("grant-image", {"guest": "alice:w", "mode": "read-only"}, ALICE, "no"),
        ("grant-image", {"guest": "bob:w", "image": "/home/alice/x.img", "mode": "read-only"},
         ALICE, None),
        ("revoke-image", {"guest": "alice:w", "image": "/etc/shadow"}, ALICE, "yes"),
        ("list", {}, ALICE, None),
        ("open-image", {"guest": "alice:w", "image": "/home/alice/x.img", "mode": "read-write",
                        "guest-uuid": ""}, ALICE, None),
    ],
    "50-image-access-readonly.rules": [
        ("open-image", {"guest": "kiosk", "image": "/srv/k.img", "mode": "read-only",
                        "guest-uuid": ""}, NOBODY, None),
        ("open-image", {"guest": "kiosk", "image": "/srv/k.img", "mode": "read-write",
                        "guest-uuid": ""}, NOBODY, "no"),
        ("open-image", {"guest": "kiosk", "image": "/srv/k.img", "mode": "create",
                        "guest-uuid": ""}, NOBODY, "no"),
        ("open-image", {"guest": "kiosk", "image": "/srv/k.img", "guest-uuid": ""},
         NOBODY, "no"),
        ("open-image", {"guest": "ro-build", "image": "/srv/b.img", "mode": "read-write",
                        "guest-uuid": ""}, NOBODY, "no"),
        ("open-image", {"guest": "rocket", "image": "/srv/r.img", "mode": "read-write",
                        "guest-uuid": ""}, NOBODY, None),
        ("open-image", {"guest": "kiosk2", "image": "/srv/r.img", "mode": "read-write",
                        "guest-uuid": ""}, NOBODY, None),
        ("grant-image", {"guest": "kiosk", "image": "/srv/k.img", "mode": "read-write"},
         OPERATOR, "no"),
        ("grant-image", {"guest": "kiosk", "image": "/srv/k.img", "mode": "read-only"},
         OPERATOR, None),
        ("register-guest", {"guest": "kiosk"}, OPERATOR, None),
        ("list", {}, OPERATOR, None),
    ],
}

# All examples installed together, under the names their headers recommend (the read-only
# rule as 40-…, so that it runs first): its denials win over the others' "yes".
TOGETHER = (
    ["50-image-access-readonly.rules", "50-image-access-desktop.rules",
     "50-image-access-operators.rules"],
    [
        ("grant-image", {"guest": "ro-x", "image": "/srv/x.img", "mode": "read-write"},
         OPERATOR, "no"),
        ("grant-image", {"guest": "ro-x", "image": "/srv/x.img", "mode": "read-only"},
         OPERATOR, "yes"),
        ("register-guest", {"guest": "alice:w"}, ALICE, "yes"),
        ("open-image", {"guest": "ro-x", "image": "/srv/x.img", "mode": "read-write",
                        "guest-uuid": ""}, OPERATOR, "no"),
    ],
)


def run_cases(duk, sources, cases):
    """Loads @sources (in order) and evaluates @cases. Returns a list of failure texts."""
    failures = []
    with duk:
        err = duk.run(PRELUDE)
        if err:
            return ["prelude: " + err]
        for name, src in sources:
            err = duk.run(src)
            if err:
                return ["%s: %s" % (name, err)]
        for action, details, subj, want in cases:
            expr = "JSON.stringify(__case(%s, %s, %s, %s, %s, %s))" % (
                json.dumps(ACTION + action), json.dumps(details), json.dumps(subj["user"]),
                json.dumps(subj["groups"]), json.dumps(subj["local"]),
                json.dumps(subj["active"]))
            ok, value = duk.eval(expr)
            if not ok:
                failures.append("%s %s as %s: exception %s" % (action, details, subj["user"],
                                                               value))
                continue
            got = json.loads(value)
            if got != want:
                failures.append("%s %s as %s: got %s, want %s" % (
                    action, details, subj["user"], json.dumps(got), json.dumps(want)))
    return failures


def main():
    if len(sys.argv) != 2:
        print("usage: check-rules.py RULES_DIR", file=sys.stderr)
        return 2
    rules_dir = sys.argv[1]
    names = sorted(f for f in os.listdir(rules_dir) if f.endswith(".rules"))
    sources = {}
    for name in names:
        with open(os.path.join(rules_dir, name), encoding="utf-8") as f:
            sources[name] = f.read()

    duk, why = load_duktape()
    n = 0
    failed = 0

    def result(ok, desc, details=(), skip=None):
        nonlocal n, failed
        n += 1
        if skip:
            print("ok %d - %s # SKIP %s" % (n, desc, skip))
            return
        print("%s %d - %s" % ("ok" if ok else "not ok", n, desc))
        for line in details:
            print("# " + line)
        if not ok:
            failed += 1

    result(bool(names), "%s holds .rules files" % rules_dir)

    for name in names:
        src = sources[name]
        problems = static_problems(src)
        result(not problems, "%s: ES5 syntax only (static)" % name, problems)

        result(src.startswith("/* SPDX-License-Identifier:") and "/etc/polkit-1/rules.d/" in src,
               "%s: starts with SPDX and a comment saying how to install it" % name)

        if not duk:
            result(True, "%s: compiles with duktape" % name, skip=why)
            result(True, "%s: behaves as documented" % name, skip=why)
            continue
        with duk:
            err = duk.compile(src)
        result(err is None, "%s: compiles with duktape" % name, [err] if err else [])

        cases = CASES.get(name)
        if cases is None:
            result(True, "%s: behaves as documented" % name,
                   skip="no cases in check-rules.py for this file; add some")
            continue
        failures = run_cases(duk, [(name, src)], cases)
        result(not failures, "%s: behaves as documented (%d cases)" % (name, len(cases)),
               failures)

    order, cases = TOGETHER
    if duk and all(name in sources for name in order):
        failures = run_cases(duk, [(name, sources[name]) for name in order], cases)
        result(not failures, "all examples together, read-only rule first (%d cases)"
               % len(cases), failures)

    print("1..%d" % n)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
