#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The benchmarks of image-access, against the limits of this machine (README, "Performance").

    bench.py run   --build BUILD [--out FILE] [--quick] [--only PHASE[,PHASE]]
    bench.py guard --build BUILD --key KEY [--baseline FILE]
    bench.py baseline --build BUILD --key KEY [--baseline FILE]

`run` (what `meson compile -C BUILD bench` does) starts one integration test bed
(tests/integration/testbed.py: a private system bus, the real polkitd, the built
image-accessd, callers as other uids), measures everything on that one bus, prints a table
and the performance targets of README.md with their ratios, and writes FILE (default
BUILD/bench.json): one JSON object per line, with at least name, unit, median, p99, n and,
where calls can fail, errors.  Latencies are in µs.  Throughputs (unit calls/s) have the rate
of the whole run as "median", no p99 (null), and the latency of their calls in latency_median
and latency_p99, plus the CPU share of the daemon, dbus-daemon and polkitd during the run.
Then it runs the state-load benchmark bench-state-load (when built), and then
tests/bench/bench-qemu.py (QEMU's start and a snapshot transaction, with 16 and with 32
disks, through the service and as root) and tests/bench/bench-libvirt.py (domain start and a
4-disk snapshot through the real libvirtd, with the service and without) with --append FILE.
Each target compares figures measured side by side: its ratio is the median of the
per-round ratios.

--only runs some of the phases, in this order, and writes BUILD/bench-PHASES.json instead
(unless --out), so that a developer can rerun one part quickly:

  latency     (also: floors) direct_open; bare_fd_call, polkit_check, open_cold, open_warm
              and open_warm_channel, interleaved in rounds
  cold        cold throughput (polkit_throughput_64, throughput_cold_*), batches
  warm        warm throughput (throughput_1/16/64/3x64), batches
  scale       scale_10/1000/10000 and startup_N
  callgrind   instructions_per_open (1 guest, 10,000 guests)
  state-load  bench-state-load (state_load_*)
  qemu        bench-qemu.py (qemu16_*, qemu16_start_*, qemu32_*, qemu32_start_*)
  libvirt     bench-libvirt.py (libvirt_*)

--quick takes fewer calls and rounds (bench-qemu.py --runs 3, bench-libvirt.py --runs 2).

The callers are tests/bench/bench-client (C, sd-bus) running as the test user ia-emu1, bound
to the guest "bench" through RegisterGuest's uid option; the guest and its grants come from
a state snapshot written by bench-mkstate before each daemon start.  "cold" means the daemon
runs with DecisionCacheSec=0, so every OpenImage asks polkitd; "warm" with DecisionCacheSec=3600,
so only a connection's first OpenImage of an image asks.  The daemon logs at info (one audit
line per open, as in production) to a file.

`guard` (the meson test bench-guard/instructions-per-open) measures instructions_per_open under
callgrind and fails when it is more than 10 % above the entry KEY of the baseline file
(tests/bench/baseline.json); KEY names the compiler and optimization (meson.build computes it),
because instruction counts depend on them.  An unknown KEY skips (exit 77) with the command
that records it: `baseline`, which measures three times and writes the median.

Every loop is bounded (call counts, 60 s D-Bus timeouts, subprocess timeouts), and everything
runs on the test bed's private bus: nothing touches the host's system bus or polkit setup.
"""

import argparse
import glob
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE_ROOT, 'tests', 'integration'))
import testbed  # noqa: E402
from benchlib import QEMU_TARGETS, logger  # noqa: E402

REF_POLICY = os.path.join(HERE, 'bench-ref.conf')
BASELINE = os.path.join(HERE, 'baseline.json')
EMU = testbed.USERS['ia-emu1']
GUEST = 'bench'
GUEST_UUID = '00000000-1b2d-4c8e-9a7f-000000000000'   # bench-mkstate's uuid of guest 0
N_IMAGES = 64
GUARD_LIMIT = 1.10              # fail above baseline × this (repeat runs differ by < 1 %)
CLK_TCK = os.sysconf('SC_CLK_TCK')

# Call counts.  Each phase is bounded by its count (and each call by a 60 s D-Bus timeout).
# bare, polkit, cold and warm are per round (latency rounds, interleaved): many short rounds,
# so that the two sides of a ratio are measured within a second of each other.
FULL = dict(direct=20000, rounds=12, bare=200, polkit=50, cold=50, warm=200, tp_warm=20000,
            tp_cold=1500, batches=10, scale=1000, scale_passes=4, callgrind=(100, 400))
QUICK = dict(direct=2000, rounds=2, bare=100, polkit=30, cold=30, warm=100, tp_warm=2000,
             tp_cold=300, batches=2, scale=300, scale_passes=1, callgrind=(50, 150))


class BenchError(Exception):
    pass


log = logger('bench')


def per_round(rounds, floors, key='median'):
    """The ratios rounds[i][key] / floors[i][key] of the rounds that have both figures."""
    return [r[key] / f[key] for r, f in zip(rounds, floors) if r.get(key) and f.get(key)]


def median_or_none(values, digits=3):
    return round(statistics.median(values), digits) if values else None


def proc_cpu_ticks(pid):
    """utime + stime of a whole process (all threads), in clock ticks; None if gone."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except (OSError, TypeError):
        return None
    return int(fields[11]) + int(fields[12])   # fields 14 and 15 of stat(5)


def proc_cpu_ns(pid):
    """CPU time of all threads of a process so far, in ns (schedstat: precise, unlike the
    clock ticks of /proc/PID/stat); None if it is gone."""
    total = 0
    try:
        for tid in os.listdir('/proc/%d/task' % pid):
            try:
                with open('/proc/%d/task/%s/schedstat' % (pid, tid)) as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass     # a thread that just ended
    except (OSError, TypeError):
        return None
    return total


def proc_status_kib(pid, key):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    return None


class Bench:
    def __init__(self, build, counts):
        self.build = os.path.abspath(build)
        self.counts = counts
        self.client_bin = self._bin('tests/bench/bench-client')
        self.ref_bin = self._bin('tests/bench/bench-ref-service')
        self.ref_checks_bin = self._bin('tests/bench/bench-ref-checks')
        self.mkstate_bin = self._bin('tests/bench/bench-mkstate')
        # IA_BENCH_DAEMON: another build of the daemon, for before/after comparisons.
        self.daemon_bin = os.environ.get('IA_BENCH_DAEMON') or self._bin('daemon/image-accessd')
        self.bed = None
        self.images = []
        self.results = []
        self.ref = None
        self.ref_checks = None          # bench-ref-checks
        self.subject = None
        self.subject_name = None
        self.subject_process = None     # PID:START:UID of self.subject

    def _bin(self, rel):
        path = os.path.join(self.build, rel)
        if not os.access(path, os.X_OK):
            raise BenchError('%s is not built (meson compile -C %s)' % (path, self.build))
        return path

    # ---- the bed -------------------------------------------------------------------------
    def start(self):
        reason = testbed.missing_requirements()
        if reason:
            raise BenchError(reason)
        self.bed = testbed.TestBed(daemon=self.daemon_bin, extra_bus_policies=[REF_POLICY])
        self.bed.start()
        # Images root-owned 0600, as in /var/lib/libvirt/images: only the service can open them.
        self.images = [self.bed.make_image('img-%02d.raw' % i, size=1 << 20)
                       for i in range(N_IMAGES)]
        return self

    def stop(self):
        for proc in (self.ref, self.ref_checks, self.subject):
            if proc and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self.bed:
            try:
                self.bed.stop()
            finally:
                if os.environ.get('IA_BENCH_KEEP'):
                    log('runtime dir kept: %s' % self.bed.runtime_dir)
                else:
                    self.bed.remove()

    def write_state(self, guests, grants=100):
        """Replace the daemon's state by GUESTS × GRANTS grants (the daemon must be stopped)."""
        for name in ('state', 'journal'):
            try:
                os.unlink(os.path.join(self.bed.state_dir, name))
            except FileNotFoundError:
                pass
        subprocess.run([self.mkstate_bin, os.path.join(self.bed.state_dir, 'state'),
                        str(guests), str(max(grants, N_IMAGES)), str(EMU.uid)] + self.images,
                       check=True, timeout=600)

    def start_daemon(self, cache_sec, guests=1, wrapper=None, extra_config=''):
        """(Re)start the daemon on a fresh state; returns (seconds until it owned its name,
        CPU seconds it used by then)."""
        if self.bed.daemon_running():
            self.bed.kill_daemon(timeout=60)
        self.write_state(guests)
        self.bed.daemon_wrapper = wrapper or []
        t0 = time.monotonic()
        self.bed.start_daemon(['--log-level=info'],
                              '[Polkit]\nDecisionCacheSec=%d\n' % cache_sec + extra_config,
                              timeout=120)
        wall = time.monotonic() - t0
        cpu = (proc_cpu_ticks(self.bed.daemon_pid) or 0) / CLK_TCK
        # A benchmark of a failing OpenImage measures the wrong path: check one first.
        res = self.client(self.open_args(1, 0))
        if res['errors']:
            raise BenchError('OpenImage fails on the benchmark state: %s' % res['error_names'])
        return wall, cpu

    # ---- callers -------------------------------------------------------------------------
    def _client_argv(self, args, uid, binary=None):
        argv = [binary or self.client_bin] + args
        if uid:
            argv = ['setpriv', '--reuid=%d' % uid, '--regid=%d' % uid, '--clear-groups',
                    '--pdeathsig=SIGKILL', '--'] + argv
        return argv

    def client(self, args, uid=EMU.uid, timeout=600):
        p = subprocess.run(self._client_argv(args, uid), env=self.bed.base_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout)
        if p.returncode != 0:
            raise BenchError('bench-client %s failed (%d): %s' % (' '.join(args), p.returncode,
                                                                p.stderr.strip()))
        if p.stderr.strip():
            log(p.stderr.strip())
        return json.loads(p.stdout.strip().splitlines()[-1])

    def clients_together(self, args_list, uid=EMU.uid, timeout=600):
        """Start one client per argument list (each with --sync), release them together once
        all are warm, and sample the CPU of the daemon, dbus-daemon and polkitd meanwhile.
        Returns (per-client results, cpu shares)."""
        procs = [subprocess.Popen(self._client_argv(args + ['--sync'], uid),
                                  env=self.bed.base_env(), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for args in args_list]
        try:
            for p in procs:
                line = p.stdout.readline()
                if line.strip() != 'ready':
                    raise BenchError('bench-client did not get ready: %r %s'
                                     % (line, p.stderr.read()))
            pids = {'image-accessd': self.bed.daemon_pid,
                    'dbus-daemon': self.bed.pids().get('dbus-daemon'),
                    'polkitd': self.bed.polkitd_pid}
            before = {k: proc_cpu_ticks(v) for k, v in pids.items()}
            t0 = time.monotonic()
            for p in procs:
                p.stdin.write('go\n')
                p.stdin.flush()
            outs = []
            for p in procs:
                out, err = p.communicate(timeout=timeout)
                if p.returncode != 0:
                    raise BenchError('bench-client failed (%d): %s' % (p.returncode, err))
                outs.append(json.loads(out.strip().splitlines()[-1]))
            wall = time.monotonic() - t0
            after = {k: proc_cpu_ticks(v) for k, v in pids.items()}
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        cpu = {k: round(100.0 * (after[k] - before[k]) / CLK_TCK / wall, 1)
               for k in pids if before[k] is not None and after[k] is not None}
        cpu['clients'] = round(100.0 * sum(o['cpu_s'] for o in outs) / wall, 1)
        return outs, cpu

    def start_subject(self):
        """A connection of ia-emu1 that stays on the bus: the subject of polkit_check."""
        self.subject = subprocess.Popen(self._client_argv(['--unique-name'], EMU.uid),
                                        env=self.bed.base_env(), stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        name = self.subject.stdout.readline().strip()
        # The service names a caller to polkit by its process (pid, start time, uid) when it
        # knows the start time, as it does for every bound emulator: ask about the same.
        with open('/proc/%d/stat' % self.subject.pid) as f:
            start = f.read().rsplit(')', 1)[1].split()[19]
        with open('/proc/%d/status' % self.subject.pid) as f:
            euid = next(l.split()[2] for l in f if l.startswith('Uid:'))
        self.subject_process = '%d:%s:%s' % (self.subject.pid, start, euid)
        return name

    def start_ref_service(self, checks=False):
        """bench-ref-service, or with checks=True bench-ref-checks."""
        env = self.bed.base_env()
        prog = 'bench-ref-checks' if checks else 'bench-ref-service'
        name = 'org.example.ImageAccessBench' + ('.Checks' if checks else '')
        log_path = os.path.join(self.bed.log_dir, prog + '.log')
        with open(log_path, 'a') as logf:
            proc = subprocess.Popen([self.ref_checks_bin if checks else self.ref_bin,
                                     self.images[0]], env=env, stdout=logf, stderr=logf)
        if checks:
            self.ref_checks = proc
        else:
            self.ref = proc
        deadline = time.monotonic() + 10
        while not self.bed.bus.name_has_owner(name):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError('%s did not start: %s' % (prog, testbed._tail(log_path)))
            time.sleep(0.005)

    # ---- results -------------------------------------------------------------------------
    def add(self, name, unit, median, p99, n, errors=None, **extra):
        rec = {'name': name, 'unit': unit, 'median': median, 'p99': p99, 'n': n}
        if errors is not None:
            rec['errors'] = errors
        rec.update(extra)
        self.results.append(rec)
        log('%-24s %s' % (name, json.dumps({k: v for k, v in rec.items() if k != 'name'})))
        return rec

    def add_latency(self, name, res, **extra):
        if res.get('error_names'):
            extra['error_names'] = res['error_names']
        return self.add(name, 'us', res['median'], res['p99'], res['n'], res['errors'], **extra)

    def open_args(self, count, warmup, in_flight=1, paths=1, group=0):
        args = ['--call=open', '--guest=' + GUEST, '--mode=read-only',
                '--count=%d' % count, '--warmup=%d' % warmup, '--in-flight=%d' % in_flight]
        args += ['--path=' + p for p in self.images[:paths]]
        if group:
            args.append('--group=%d' % group)
        return args

    def throughput(self, name, clients, in_flight, count, warmup, kind, args=None, uid=EMU.uid):
        outs, cpu = self.clients_together(
            [args or self.open_args(count, warmup, in_flight, paths=N_IMAGES)] * clients, uid=uid)
        span = max(o['end'] for o in outs) - min(o['start'] for o in outs)
        calls = sum(o['calls'] for o in outs)
        errors = sum(o['errors'] for o in outs)
        names = {}
        for o in outs:
            for k, v in o['error_names'].items():
                names[k] = names.get(k, 0) + v
        lat = [o['median'] for o in outs]
        trio = {k: v for k, v in cpu.items() if k != 'clients'}
        extra = dict(kind=kind, clients=clients, in_flight=in_flight,
                     latency_median=round(statistics.median(lat), 1),
                     latency_p99=max(o['p99'] for o in outs), cpu_pct=cpu,
                     busiest=max(trio, key=trio.get))
        if names:
            extra['error_names'] = names
        return self.add(name, 'calls/s', round(calls / span, 1), None, calls, errors, **extra)

    # ---- the phases ----------------------------------------------------------------------
    def service_pid(self, name):
        """The process that serves a measurement: the reference service, the daemon, polkitd."""
        return {'bare': self.ref.pid if self.ref else None,
                'checks': self.ref_checks.pid if self.ref_checks else None,
                'polkit': self.bed.polkitd_pid}.get(name, self.bed.daemon_pid)

    def measured_client(self, args, uid, pid):
        """client(), plus cpu_us: the CPU the serving process @pid spent per call meanwhile
        (all its threads; warm-up calls included, idle time is next to nothing)."""
        before = proc_cpu_ns(pid)
        res = self.client(args, uid=uid)
        after = proc_cpu_ns(pid)
        calls = res['calls'] + sum(int(a.split('=')[1]) for a in args
                                   if a.startswith('--warmup='))
        if before is not None and after is not None and calls:
            res['cpu_us'] = (after - before) / 1000.0 / calls
        return res

    def interleaved(self, specs, rounds):
        """Run each (name, args, uid) of specs once per round, round after round, so that
        the figures compared in a ratio are measured side by side: this machine's load moves
        more between seconds than between the two halves of a round.  Returns
        {name: [result of each round]}, each result with its raw samples and the serving
        process's CPU per call."""
        res = {name: [] for name, _, _ in specs}
        for _ in range(rounds):
            for name, args, uid in specs:
                res[name].append(self.measured_client(args + ['--raw'], uid,
                                                      self.service_pid(name)))
        return res

    def add_merged(self, name, results, **extra):
        """One entry from the rounds of one measurement: median and p99 of all samples."""
        samples = sorted(x for r in results for x in r['samples'])
        errors = sum(r['errors'] for r in results)
        names = {}
        for r in results:
            for k, v in r['error_names'].items():
                names[k] = names.get(k, 0) + v
        if names:
            extra['error_names'] = names
        n = len(samples)
        p99 = samples[min(n - 1, max(0, -(-99 * n // 100) - 1))] if n else None
        extra['round_medians'] = [round(r['median'], 1) for r in results]
        cpu = [r['cpu_us'] for r in results if 'cpu_us' in r]
        if cpu:
            extra['service_cpu_us'] = round(statistics.median(cpu), 1)
        return self.add(name, 'us', round(statistics.median(samples), 3) if n else None,
                        p99, n, errors, **extra)

    def bare_args(self, count, warmup):
        return ['--call=ref', '--guest=' + GUEST, '--mode=read-only', '--path=' + self.images[0],
                '--count=%d' % count, '--warmup=%d' % warmup]

    def checks_args(self, count, warmup):
        return ['--call=checks'] + self.bare_args(count, warmup)[1:]

    def polkit_args(self, count, warmup):
        return ['--call=polkit', '--subject-process=' + self.subject_process, '--guest=' + GUEST,
                '--mode=read-only', '--uuid=' + GUEST_UUID, '--path=' + self.images[0],
                '--count=%d' % count, '--warmup=%d' % warmup]

    def need_ref_service(self):
        if self.ref is None:
            self.start_ref_service()
        if self.ref_checks is None:
            self.start_ref_service(checks=True)

    def need_subject(self):
        if self.subject_name is None:
            self.subject_name = self.start_subject()

    def run_floors(self):
        c = self.counts
        log('floors: direct open')
        res = self.client(['--call=direct', '--path=' + self.images[0],
                           '--count=%d' % c['direct'], '--warmup=%d' % (c['direct'] // 10)],
                          uid=0)
        self.add_latency('direct_open', res, how='open(O_RDONLY|O_CLOEXEC) + close() of the '
                                                  'same file by root, no bus')

    def run_latency(self):
        """bare_fd_call, polkit_check, open_cold and open_warm, interleaved in rounds."""
        c = self.counts
        self.need_ref_service()
        self.need_subject()
        rounds = c['rounds']
        log('cold: DecisionCacheSec=0, every OpenImage asks polkitd; %d rounds of bare fd '
            'call, polkit check, cold OpenImage' % rounds)
        self.start_daemon(cache_sec=0)
        cold = self.interleaved([
            ('bare', self.bare_args(c['bare'], c['bare'] // 10), EMU.uid),
            ('polkit', self.polkit_args(c['polkit'], c['polkit'] // 10), 0),
            ('cold', self.open_args(c['cold'], c['cold'] // 10), EMU.uid)], rounds)
        log('warm: DecisionCacheSec=3600; %d rounds of bare fd call, the checks\' floor, warm '
            'OpenImage on the bus and on a channel' % rounds)
        self.start_daemon(cache_sec=3600)
        warm = self.interleaved([
            ('bare', self.bare_args(c['bare'], c['bare'] // 10), EMU.uid),
            ('checks', self.checks_args(c['bare'], c['bare'] // 10), EMU.uid),
            ('warm', self.open_args(c['warm'], c['warm'] // 10), EMU.uid),
            ('channel', ['--call=channel'] + self.open_args(c['warm'], c['warm'] // 10)[1:],
             EMU.uid)], rounds)

        self.add_merged('bare_fd_call', cold['bare'] + warm['bare'],
                        how='OpenFd() of bench-ref-service: same arguments as OpenImage, '
                            'returns an fd opened at start-up, no checks')
        self.add_merged('polkit_check', cold['polkit'],
                        how='CheckAuthorization of open-image with the details OpenImage '
                            'passes, by root, subject an ia-emu1 connection')
        self.add_ratio('open_cold', cold['cold'], 'cold',
                       [c_['median'] / (b['median'] + p['median'])
                        for b, p, c_ in zip(cold['bare'], cold['polkit'], cold['cold'])],
                       'OpenImage with DecisionCacheSec=0; ratio: per round, '
                       'open_cold / (bare_fd_call + polkit_check), median of rounds')
        # The CPU each serving process spent per call, compared round by round as well.
        self.add_ratio('checks_fd_call', warm['checks'], 'floor',
                       per_round(warm['checks'], warm['bare']),
                       'OpenFd() of bench-ref-checks: the daemon\'s safe open of '
                       'the path and its audit record, nothing else; ratio: per round, '
                       'checks_fd_call / bare_fd_call; cpu_ratio: its CPU per call / the '
                       'reference\'s; open_warm\'s checks_cpu_ratio: the daemon\'s / its',
                       cpu_ratio=median_or_none(per_round(warm['checks'], warm['bare'],
                                                          'cpu_us')))
        self.add_ratio('open_warm', warm['warm'], 'warm', per_round(warm['warm'], warm['bare']),
                       'OpenImage whose polkit yes is reused; ratio: per round, '
                       'open_warm / bare_fd_call, median of rounds; cpu_ratio: per round, the '
                       'daemon\'s CPU per open / the reference service\'s per call, median '
                       'of rounds (ref_cpu_us: the reference\'s in these rounds)',
                       cpu_ratio=median_or_none(per_round(warm['warm'], warm['bare'], 'cpu_us')),
                       ref_cpu_us=median_or_none([b['cpu_us'] for b in warm['bare']
                                                  if b.get('cpu_us')], 1),
                       checks_cpu_ratio=median_or_none(per_round(warm['warm'], warm['checks'],
                                                                 'cpu_us')))
        self.add_ratio('open_warm_channel', warm['channel'], 'warm',
                       per_round(warm['channel'], warm['bare']),
                       'ia_client_open() with a channel (ia_client_set_use_channel), polkit '
                       'yes reused; ratio: per round, open_warm_channel / bare_fd_call, '
                       'median of rounds')

    def add_ratio(self, name, rounds, kind, ratios, how, **extra):
        """add_merged() of a measure compared round by round: the median of its ratios."""
        self.add_merged(name, rounds, kind=kind, ratio=round(statistics.median(ratios), 3),
                        ratio_rounds=[round(x, 2) for x in ratios], how=how, **extra)

    def run_cold(self):
        c = self.counts
        log('cold throughput and batches (DecisionCacheSec=0)')
        self.need_subject()
        self.start_daemon(cache_sec=0)
        # The floor of cold throughput: polkitd alone, 64 checks in flight from root.
        self.throughput('polkit_throughput_64', 1, 64, c['tp_cold'], 64, 'polkit',
                        args=self.polkit_args(c['tp_cold'], 64) + ['--in-flight=64'], uid=0)
        self.throughput('throughput_cold_64', 1, 64, c['tp_cold'], 64, 'cold')
        self.throughput('throughput_cold_3x64', 3, 64, c['tp_cold'], 64, 'cold')
        self.batches('cold')

    def batches(self, kind):
        """batch_64: one IaBatch of 64 images (libimageaccess: all calls pipelined on one
        connection, until every reply is in, then commit); sequential_64: the same 64
        OpenImage calls one after another."""
        c = self.counts
        suffix = '' if kind == 'cold' else '_warm'
        batch_bin = os.path.join(self.build, 'tests', 'bench', 'bench-batch')
        if os.access(batch_bin, os.X_OK):
            args = ['--guest=' + GUEST, '--count=%d' % c['batches'], '--warmup=1'] + \
                ['--path=' + p for p in self.images]
            p = subprocess.run(self._client_argv(args, EMU.uid, binary=batch_bin),
                               env=self.bed.base_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=600)
            if p.returncode != 0:
                raise BenchError('bench-batch failed (%d): %s' % (p.returncode, p.stderr))
            res = json.loads(p.stdout.strip().splitlines()[-1])
            how = 'ia_batch_run() of an IaBatch of 64 images (libimageaccess), commit, close'
        else:
            res = self.client(self.open_args(N_IMAGES * c['batches'], N_IMAGES,
                                             in_flight=N_IMAGES, paths=N_IMAGES,
                                             group=N_IMAGES))
            how = ('64 OpenImage calls of 64 images pipelined on one connection (raw sd-bus; '
                   'bench-batch not built), until the last reply')
        self.add_latency('batch_64' + suffix, res, kind=kind, how=how)
        res = self.client(self.open_args(N_IMAGES * c['batches'], N_IMAGES, in_flight=1,
                                         paths=N_IMAGES, group=N_IMAGES))
        self.add_latency('sequential_64' + suffix, res, kind=kind,
                         how='the same 64 OpenImage calls one after another (bench-client)')

    def run_warm(self):
        c = self.counts
        log('warm throughput and batches (DecisionCacheSec=3600)')
        self.start_daemon(cache_sec=3600)
        for k in (1, 16, 64):
            self.throughput('throughput_%d' % k, 1, k, c['tp_warm'], 2 * N_IMAGES, 'warm')
        self.throughput('throughput_3x64', 3, 64, c['tp_warm'], 2 * N_IMAGES, 'warm')
        self.batches('warm')

    def run_scale(self):
        """scale_G: warm OpenImage with G guests x 100 grants.  Passes of 10, 1000, 10000 guests
        alternate in direction (10, 1000, 10000, then 10000, 1000, 10, ...), so that a drift of
        this machine's load during the phase does not look like a slope; each entry merges its
        passes, and its ratio to scale_10 is the median of the passes' ratios."""
        c = self.counts
        log('scale: guests x 100 grants, warm OpenImage, RSS and start-up')
        empty, empty_cpu = self.start_daemon(cache_sec=3600, guests=1)
        self.add('startup_1', 's', round(empty, 3), None, 1, cpu_s=empty_cpu,
                 how='daemon start until it owns its name, 1 guest x 100 grants')
        scales = (10, 1000, 10000)
        passes = [scales if i % 2 == 0 else scales[::-1] for i in range(c['scale_passes'])]
        runs = {g: [] for g in scales}
        for order in passes:
            for guests in order:
                startup, cpu = self.start_daemon(cache_sec=3600, guests=guests)
                pid = self.bed.daemon_pid
                res = self.measured_client(self.open_args(c['scale'], c['scale'] // 4,
                                                          paths=N_IMAGES) + ['--raw'],
                                           EMU.uid, pid)
                res.update(startup=startup, startup_cpu=cpu,
                           rss_kib=proc_status_kib(pid, 'VmRSS'),
                           hwm_kib=proc_status_kib(pid, 'VmHWM'))
                runs[guests].append(res)
        for guests in sorted(runs):
            rs = runs[guests]
            ratios = [r['median'] / r10['median'] for r, r10 in zip(rs, runs[10])]
            cpu_ratios = [r['cpu_us'] / r10['cpu_us'] for r, r10 in zip(rs, runs[10])
                          if 'cpu_us' in r and r10.get('cpu_us')]
            self.add_merged('scale_%d' % guests, rs, kind='warm', guests=guests,
                            grants=guests * 100,
                            ratio=round(statistics.median(ratios), 3),
                            ratio_rounds=[round(x, 2) for x in ratios],
                            cpu_ratio=round(statistics.median(cpu_ratios), 3)
                            if cpu_ratios else None,
                            rss_kib=max(r['rss_kib'] for r in rs),
                            hwm_kib=max(r['hwm_kib'] for r in rs))
            startup = statistics.median(r['startup'] for r in rs)
            cpu = statistics.median(r['startup_cpu'] for r in rs)
            self.add('startup_%d' % guests, 's', round(startup, 3), None, len(rs),
                     grants=guests * 100, cpu_s=round(cpu, 3),
                     state_load_est=round(max(0.0, startup - empty), 3),
                     state_load_cpu_est=round(max(0.0, cpu - empty_cpu), 3),
                     how='daemon start until it owns its name (cpu_s: its CPU time by then); '
                         'state_load_est subtracts startup_1')

    # ---- callgrind -----------------------------------------------------------------------
    def instructions_per_open(self, counts=None, guests=1, cache_sec=3600):
        """Ir per warm OpenImage in the daemon: (Ir(N2) - Ir(N1)) / (N2 - N1), each window
        zeroed and dumped with callgrind_control around N sequential opens."""
        n1, n2 = counts or self.counts['callgrind']
        outdir = tempfile.mkdtemp(prefix='ia-bench-callgrind-')
        wrapper = ['valgrind', '--tool=callgrind', '--instr-atstart=no',
                   '--callgrind-out-file=%s/callgrind.out' % outdir]
        try:
            self.start_daemon(cache_sec=cache_sec, guests=guests, wrapper=wrapper)
            pid = self.bed.daemon_pid
            ctl = ['callgrind_control']

            def control(*args):
                p = subprocess.run(ctl + list(args) + [str(pid)], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, timeout=120)
                if p.returncode != 0:
                    raise BenchError('callgrind_control %s: %s' % (' '.join(args), p.stdout))

            def dumped():
                return sorted(glob.glob(os.path.join(outdir, 'callgrind.out.*')),
                              key=lambda f: int(f.rsplit('.', 1)[1]))

            def total_ir(path):
                with open(path) as f:
                    for line in f:
                        m = re.match(r'(?:summary|totals):\s+(\d+)', line)
                        if m:
                            return int(m.group(1))
                raise BenchError('no totals in %s' % path)

            def window(n):
                # One client for all windows would keep one connection; a new connection
                # per window asks polkit once: warm it up first, unmeasured.
                control('--zero')
                res = self.client(self.open_args(n, 0))
                if res['errors']:
                    raise BenchError('OpenImage failed under callgrind: %s' % res['error_names'])
                before = len(dumped())
                control('--dump')
                deadline = time.monotonic() + 60
                while len(dumped()) == before:
                    if time.monotonic() > deadline:
                        raise BenchError('callgrind wrote no dump')
                    time.sleep(0.05)
                time.sleep(0.2)     # let it finish writing
                return total_ir(dumped()[-1])

            control('--instr=on')
            # Translate and warm everything (a new client connection asks polkit once).
            self.client(self.open_args(50, 0))
            # Each window is a new connection (one polkit check, one NameOwnerChanged pair):
            # the same fixed cost in both, which the difference cancels.
            ir1 = window(n1)
            ir2 = window(n2)
            ir1b = window(n1)
            per_open = (ir2 - ir1) / (n2 - n1)
            return dict(per_open=per_open, ir1=ir1, ir2=ir2, ir1_again=ir1b, n1=n1, n2=n2,
                        fixed=ir1 - n1 * per_open)
        finally:
            if self.bed.daemon_running():
                self.bed.kill_daemon(timeout=60)
            self.bed.daemon_wrapper = []
            shutil.rmtree(outdir, ignore_errors=True)

    def run_callgrind(self):
        log('callgrind: instructions per warm OpenImage (1 guest, then 10,000 guests)')
        for guests, name in ((1, 'instructions_per_open'),
                             (10000, 'instructions_per_open_10000')):
            r = self.instructions_per_open(guests=guests)
            self.add(name, 'Ir', round(r['per_open']), None, r['n2'] - r['n1'],
                     guests=guests, grants=guests * 100,
                     how='daemon under callgrind, (Ir(%d opens) - Ir(%d opens)) / %d, warm, '
                         'all threads' % (r['n2'], r['n1'], r['n2'] - r['n1']),
                     window_repeat_drift=round((r['ir1_again'] - r['ir1']) / max(1, r['ir1']),
                                               4))

    # ---- other engineers' benchmarks -------------------------------------------------------
    def run_state_load(self):
        path = os.path.join(self.build, 'tests', 'bench', 'bench-state-load')
        if not os.access(path, os.X_OK):
            log('bench-state-load not built: skipped')
            return
        log('bench-state-load 10000 100 3 (state_load() in-process)')
        p = subprocess.run([path, '10000', '100', '3'], stdout=subprocess.PIPE, text=True,
                           timeout=600)
        for line in p.stdout.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get('name', '').startswith(('state_load_', 'state_load_cpu_')) and \
                    'median' in rec:
                rec.setdefault('p99', rec.get('max'))
                rec['how'] = 'bench-state-load: state_load() in a fresh process; p99 = max'
                self.results.append(rec)


def run_script(script_name, build, out, runs=None):
    """Runs tests/bench/SCRIPT --build BUILD --append OUT [--runs RUNS] (bench-qemu.py: QEMU's
    start with 32 disks and snapshot transactions of 16 and 32; bench-libvirt.py: domain start
    and a 4-disk snapshot through libvirtd); returns a note when it did not run through, else
    None."""
    script = os.path.join(HERE, script_name)
    if not os.path.exists(script):
        return 'tests/bench/%s is not there (yet): skipped' % script_name
    argv = [testbed.PYTHON, script, '--build', build, '--append', out]
    if runs:
        argv += ['--runs', str(runs)]
    log(' '.join([script_name] + argv[2:]))
    p = subprocess.run(argv, timeout=1800)
    if p.returncode == 77:
        return '%s skipped itself (exit 77)' % script_name
    if p.returncode != 0:
        return '%s failed (exit %d)' % (script_name, p.returncode)
    return None


# ---- reporting ---------------------------------------------------------------------------------

def fmt(v, unit=''):
    if v is None:
        return '-'
    if isinstance(v, float) and unit != 'Ir':
        return '%.3f' % v if v < 10 else '%.1f' % v if v < 1000 else '%.0f' % v
    return str(v)


def print_table(results, out=sys.stdout):
    out.write('\n%-24s %-8s %12s %12s %8s %7s  %s\n'
              % ('name', 'unit', 'median', 'p99', 'n', 'errors', 'notes'))
    out.write('-' * 100 + '\n')
    for r in results:
        notes = []
        if r['unit'] == 'calls/s':
            notes.append('lat %s/%s us' % (fmt(r.get('latency_median')),
                                          fmt(r.get('latency_p99'))))
            notes.append('cpu%% ' + ' '.join('%s %s' % (k.replace('image-accessd', 'daemon'),
                                                       v) for k, v in r['cpu_pct'].items()))
        if 'rss_kib' in r:
            notes.append('rss %d MiB' % round(r['rss_kib'] / 1024))
        if 'state_load_est' in r:
            notes.append('load ~%.3f s' % r['state_load_est'])
        if r.get('kind'):
            notes.insert(0, r['kind'])
        out.write('%-24s %-8s %12s %12s %8s %7s  %s\n'
                  % (r['name'], r['unit'], fmt(r['median'], r['unit']),
                     fmt(r['p99'], r['unit']), r['n'], fmt(r.get('errors')),
                     (', '.join(notes)).replace('%%', '%')))


def targets(results):
    """[(target, measured, limit, ok)] for the performance targets of README.md: the goals of
    the hot path (each a ratio of figures measured side by side in the same run, the median
    of the per-round ratios), then cold, scale and state load."""
    by = {r['name']: r for r in results}
    rows = []

    def med(n):
        return by[n]['median'] if n in by and by[n]['median'] is not None else None

    def round_ratio(n, floor):
        """The median of n's per-round ratios to floor, else the ratio of the medians."""
        return by[n].get('ratio') or med(n) / med(floor)

    if med('open_warm') and med('bare_fd_call'):
        ratio = round_ratio('open_warm', 'bare_fd_call')
        rows.append(('open_warm / bare_fd_call', '%.2f' % ratio, '<= 1.20', ratio <= 1.2))
        cw = by['open_warm'].get('service_cpu_us')
        cb = by['open_warm'].get('ref_cpu_us') or by['bare_fd_call'].get('service_cpu_us')
        cpu = by['open_warm'].get('cpu_ratio') or (cw / cb if cw and cb else None)
        if cpu:
            rows.append(('daemon CPU per warm open / reference service\'s (%.0f us / %.0f us)'
                         % (cw, cb), '%.2f' % cpu, '<= 1.5', cpu <= 1.5))
        # Where that goes: the checks every open keeps (the safe open, the audit record),
        # measured alone by bench-ref-service --checks, and the daemon's bookkeeping above them.
        kc = by.get('checks_fd_call', {}).get('cpu_ratio')
        dk = by['open_warm'].get('checks_cpu_ratio')
        if by.get('checks_fd_call', {}).get('errors'):
            rows.append(('errors of checks_fd_call (bench-ref-checks)',
                         str(by['checks_fd_call']['errors']), '== 0', False))
        elif kc and dk:
            rows.append(('  the checks alone (bench-ref-checks), CPU / reference service\'s',
                         '%.2f' % kc, 'report', True))
            rows.append(('  daemon CPU per warm open / the checks alone', '%.2f' % dk,
                         'report', True))
    if med('instructions_per_open'):
        ir = med('instructions_per_open')
        rows.append(('instructions_per_open (callgrind, warm, 1 guest)', '%d' % ir,
                     '<= 30000', ir <= 30000))
    busiest = [(r['name'], r['busiest']) for r in results
               if 'busiest' in r and r.get('kind') == 'warm']
    if busiest:
        bad = [n for n, b in busiest if b == 'image-accessd']
        rows.append(('daemon the busiest of daemon/dbus-daemon/polkitd, warm runs',
                     '%d of %d' % (len(bad), len(busiest)), '0', not bad))
    if med('open_warm_channel') and med('bare_fd_call'):
        ratio = round_ratio('open_warm_channel', 'bare_fd_call')
        rows.append(('open_warm_channel / bare_fd_call', '%.2f' % ratio, '<= 0.60',
                     ratio <= 0.6))
    for pair, limit in QEMU_TARGETS.items():
        svc = by.get(pair + '_service')
        if svc and svc.get('pair_ratio_median') and med(pair + '_root'):
            ratio = svc['pair_ratio_median']
            rows.append(('%s_service / %s_root' % (pair, pair), '%.2f' % ratio,
                         '<= %.2f' % limit, ratio <= limit))
    if med('open_cold') and med('bare_fd_call') and med('polkit_check'):
        ratio = by['open_cold'].get('ratio') or \
            med('open_cold') / (med('bare_fd_call') + med('polkit_check'))
        rows.append(('open_cold / (bare_fd_call + polkit_check)', '%.2f' % ratio,
                     '<= 1.10', ratio <= 1.1))
    if med('throughput_cold_64') and med('polkit_throughput_64'):
        ratio = med('throughput_cold_64') / med('polkit_throughput_64')
        rows.append(('throughput_cold_64 / polkit_throughput_64 (polkitd bounds it)',
                     '%.2f' % ratio, 'report', True))
    for n in ('throughput_3x64', 'throughput_cold_3x64'):
        if n in by:
            rows.append(('errors of %s' % n, str(by[n]['errors']), '== 0',
                         by[n]['errors'] == 0))
    if med('scale_10'):
        for g in (1000, 10000):
            if med('scale_%d' % g):
                ratio = by['scale_%d' % g].get('ratio') or med('scale_%d' % g) / med('scale_10')
                rows.append(('scale_%d / scale_10 (median of alternating passes)' % g,
                             '%.2f' % ratio, '0.90 - 1.10', 0.9 <= ratio <= 1.1))
                cr = by['scale_%d' % g].get('cpu_ratio')
                if cr:
                    rows.append(('  the same, daemon CPU per open', '%.2f' % cr, '0.90 - 1.10',
                                 0.9 <= cr <= 1.1))
        if med('instructions_per_open') and med('instructions_per_open_10000'):
            ratio = med('instructions_per_open_10000') / med('instructions_per_open')
            rows.append(('instructions per open, 10,000 guests / 1 guest (callgrind)',
                         '%.3f' % ratio, '0.90 - 1.10', 0.9 <= ratio <= 1.1))
        if 'scale_10000' in by and 'scale_1000' in by and 'startup_1' in by:
            # Memory per grant above an empty daemon: flat means no more than linear growth.
            base = by['scale_10'].get('rss_kib', 0)
            per = [1024.0 * (by['scale_%d' % g]['rss_kib'] - base) / (g * 100 - 1000)
                   for g in (1000, 10000)]
            ratio = per[1] / per[0]
            rows.append(('RSS per grant, 10,000 / 1,000 guests (%.0f / %.0f bytes; %d MiB)'
                         % (per[1], per[0], by['scale_10000']['rss_kib'] // 1024),
                         '%.2f' % ratio, '<= 1.10', ratio <= 1.1))
    if 'startup_10000' in by:
        est = by['startup_10000']['state_load_est']
        cpu = by['startup_10000']['state_load_cpu_est']
        rows.append(('daemon state load, 1,000,000 grants: wall (start-up - empty one)',
                     '%.3f s' % est, '<= 1 s', est <= 1.0))
        rows.append(('daemon state load, 1,000,000 grants: its CPU time', '%.3f s' % cpu,
                     '<= 1 s', cpu <= 1.0))
    for n, what in (('state_load_1000000', 'wall'), ('state_load_cpu_1000000', 'CPU')):
        if med(n):
            v = med(n) / 1000
            rows.append(('state_load(), 1,000,000 grants, bench-state-load: %s' % what,
                         '%.3f s' % v, '<= 1 s', v <= 1.0))
    return rows


def print_targets(rows, out=sys.stdout):
    out.write('\n%-72s %-14s %-12s %s\n' % ('target', 'measured', 'limit', ''))
    out.write('-' * 106 + '\n')
    for name, measured, limit, ok in rows:
        out.write('%-72s %-14s %-12s %s\n' % (name, measured, limit, 'ok' if ok else 'MISSED'))


def build_info(build):
    try:
        with open(os.path.join(build, 'meson-info', 'intro-buildoptions.json')) as f:
            opts = {o['name']: o['value'] for o in json.load(f)}
        return opts.get('buildtype'), opts.get('b_sanitize')
    except (OSError, ValueError):
        return None, None


# The phases of `run`, in the order they run; --only picks some.  BED_PHASES share one test
# bed; the scripts start their own, and state-load needs none.
BED_PHASES = ('latency', 'cold', 'warm', 'scale', 'callgrind')
PHASES = BED_PHASES + ('state-load', 'qemu', 'libvirt')
PHASE_ALIASES = {'floors': 'latency', 'floors+latency': 'latency'}
SCRIPTS = {'qemu': 'bench-qemu.py', 'libvirt': 'bench-libvirt.py'}
QUICK_RUNS = {'qemu': 3, 'libvirt': 2}


def parse_phases(only):
    """The phases named in --only (comma-separated), in run order; all without --only."""
    if not only:
        return list(PHASES)
    names = {PHASE_ALIASES.get(n.strip(), n.strip()) for n in only.split(',') if n.strip()}
    unknown = sorted(names - set(PHASES))
    if unknown or not names:
        raise BenchError('--only: unknown phase %s; the phases are %s'
                         % (', '.join(unknown) or "''", ', '.join(PHASES)))
    return [p for p in PHASES if p in names]


def cmd_run(args):
    build = os.path.abspath(args.build)
    phases = parse_phases(args.only)
    # A partial run does not overwrite the full run's results.
    out = args.out or os.path.join(build, 'bench.json' if not args.only else
                                   'bench-%s.json' % '-'.join(phases))
    buildtype, sanitize = build_info(build)
    if buildtype not in ('release', 'debugoptimized', 'plain', 'custom') or \
            sanitize not in (None, 'none'):
        log('WARNING: %s is a %s build (sanitize=%s): figures are not representative; use '
            '`meson setup BUILD --buildtype=release`' % (build, buildtype, sanitize))
    b = Bench(build, QUICK if args.quick else FULL)
    notes = []
    t0 = time.monotonic()
    on_bed = [p for p in phases if p in BED_PHASES]
    if 'callgrind' in on_bed and not (shutil.which('valgrind') and
                                      shutil.which('callgrind_control')):
        notes.append('valgrind not installed: instructions_per_open skipped')
        on_bed.remove('callgrind')
    if on_bed:
        try:
            b.start()
            for phase in on_bed:
                if phase == 'latency':
                    b.run_floors()
                getattr(b, 'run_' + phase)()
        finally:
            b.stop()
    if 'state-load' in phases:
        b.run_state_load()
    with open(out, 'w') as f:
        for r in b.results:
            f.write(json.dumps(r) + '\n')
    for phase in phases:
        if phase in SCRIPTS:
            note = run_script(SCRIPTS[phase], build, out,
                              QUICK_RUNS[phase] if args.quick else None)
            if note:
                notes.append(note)
    with open(out) as f:
        results = [json.loads(line) for line in f if line.strip()]
    sys.stdout.write('\nimage-access benchmarks: %s build in %s, %d CPUs, %.0f s%s\n'
                     % (buildtype, build, os.cpu_count(), time.monotonic() - t0,
                        '' if not args.only else ', only ' + ', '.join(phases)))
    print_table(results)
    rows = targets(results)
    print_targets(rows)
    for n in notes:
        sys.stdout.write('note: %s\n' % n)
    sys.stdout.write('\nwritten: %s\n' % out)
    # Figures are reported, not asserted: a missed target is information, not a broken build.
    return 0


# ---- the guard -----------------------------------------------------------------------------

def guard_measure(build, runs=1, counts=None):
    values = []
    b = Bench(build, FULL)
    try:
        b.start()
        for _ in range(runs):
            values.append(b.instructions_per_open(counts))
    finally:
        b.stop()
    return values


def cmd_guard(args):
    reason = testbed.missing_requirements()
    if reason:
        sys.stderr.write('SKIP: %s\n' % reason)
        return 77
    if not (shutil.which('valgrind') and shutil.which('callgrind_control')):
        sys.stderr.write('SKIP: valgrind is not installed (tests/tools/setup.sh installs it)\n')
        return 77
    with open(args.baseline) as f:
        baseline = json.load(f)
    entry = baseline.get('instructions_per_open', {}).get(args.key)
    if entry is None:
        sys.stderr.write('SKIP: no baseline for build configuration %r in %s; record one with\n'
                         '  /usr/bin/python3 tests/bench/bench.py baseline --build %s --key %s\n'
                         % (args.key, args.baseline, args.build, args.key))
        return 77
    try:
        (m,) = guard_measure(args.build, counts=GUARD_COUNTS)
    except testbed.TestBedError as e:
        if 'debuginfo reader' in str(e):
            sys.stderr.write('SKIP: valgrind cannot read this build\'s debug information (clang '
                             'writes DWARF 5, which valgrind 3.19 does not know)\n')
            return 77
        raise
    limit = entry * GUARD_LIMIT
    print('instructions per warm OpenImage: %.0f (baseline %s for %s: %d, limit +%d %%: %.0f)'
          % (m['per_open'], os.path.relpath(args.baseline, SOURCE_ROOT), args.key, entry,
             round((GUARD_LIMIT - 1) * 100), limit))
    print('windows: %d opens %d Ir, %d opens %d Ir, %d opens again %d Ir'
          % (m['n1'], m['ir1'], m['n2'], m['ir2'], m['n1'], m['ir1_again']))
    if m['per_open'] > limit:
        print('FAIL: the daemon now runs %.0f %% more instructions per OpenImage than the '
              'baseline.  Profile it (README, "Performance": callgrind_annotate); if the rise '
              'is wanted, record a new baseline with `bench.py baseline` and say why in the '
              'commit.' % (100.0 * (m['per_open'] / entry - 1)))
        return 1
    if m['per_open'] < entry / GUARD_LIMIT:
        print('note: well below the baseline; record the improvement with `bench.py baseline`')
    return 0


GUARD_COUNTS = (100, 300)


def cmd_baseline(args):
    runs = guard_measure(args.build, runs=3, counts=GUARD_COUNTS)
    values = sorted(r['per_open'] for r in runs)
    med = values[1]
    print('instructions per open, 3 runs: %s; median %.0f' % (
        ', '.join('%.0f' % v for v in values), med))
    try:
        with open(args.baseline) as f:
            baseline = json.load(f)
    except FileNotFoundError:
        baseline = {}
    baseline.setdefault('instructions_per_open', {})[args.key] = int(round(med))
    with open(args.baseline, 'w') as f:
        json.dump(baseline, f, indent=2, sort_keys=True)
        f.write('\n')
    print('written: %s [%s] = %d' % (args.baseline, args.key, int(round(med))))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('run', help='all benchmarks, table and BUILD/bench.json')
    p.add_argument('--build', required=True)
    p.add_argument('--out')
    p.add_argument('--quick', action='store_true', help='fewer calls (a smoke run)')
    p.add_argument('--only', metavar='PHASE[,PHASE]',
                   help='run only these phases: %s' % ', '.join(PHASES))
    for name, helptext in (('guard', 'the CI guard on instructions per open'),
                           ('baseline', 'record the guard baseline of this build')):
        p = sub.add_parser(name, help=helptext)
        p.add_argument('--build', required=True)
        p.add_argument('--key', required=True)
        p.add_argument('--baseline', default=BASELINE)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit('SIGTERM'))
    try:
        return {'run': cmd_run, 'guard': cmd_guard, 'baseline': cmd_baseline}[args.cmd](args)
    except BenchError as e:
        sys.stderr.write('bench: %s\n' % e)
        return 1


if __name__ == '__main__':
    sys.exit(main())
