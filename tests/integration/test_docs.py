#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The README's shell transcript ("At a shell") is replayed against the live service on the
test bed, command by command, and its output must be what the README shows.  The image
directory is renamed as the README says (the bed's images dir ↔ /var/lib/libvirt/images); bus
unique names, pids, and the pinned file's device and inode numbers vary from run to run and
are compared as placeholders.  uids 61002 and 61003 are the bed's ia-emu1 and ia-emu2.

Run `test_docs.py --print` (as root, from meson's environment) to print the transcript as
the service answers it today, to update the README with.

The first example of image-accessctl(1) (register, grant, list) is run the same way, and the
table it prints must be the man page's.
"""

import os
import re
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testbed  # noqa: E402

README = os.path.join(testbed.SOURCE_ROOT, 'README.md')
README_IMAGES = '/var/lib/libvirt/images'
VARYING = [
    (re.compile(r':1\.\d+'), ':1.N'),
    (re.compile(r'\bpid \d+'), 'pid N'),
    (re.compile(r'("(?:device|inode)" t )\d+'), r'\1N'),
]


def readme_transcript():
    """The lines of the fenced block of the README's "At a shell" section."""
    with open(README) as f:
        text = f.read()
    section = text.split('\n## At a shell\n', 1)[1].split('\n## ', 1)[0]
    block = section.split('\n```\n', 1)[1].split('\n```\n', 1)[0]
    return block.split('\n')


def normalize(lines):
    out = []
    for line in lines:
        for rx, repl in VARYING:
            line = rx.sub(repl, line)
        out.append(line.rstrip())
    return out


def replay(bed, lines):
    """Run every '$ ' line of the transcript on the bed; returns the transcript as the service
    answers it (commands, then their stdout and stderr as a terminal would show them)."""
    images = os.path.join(bed.images_dir, 'vm')
    os.makedirs(images, exist_ok=True)
    out = []
    for line in lines:
        if not line.startswith('$ '):
            continue
        cmd = line[2:]
        out.append(line)
        argv = [a.replace(README_IMAGES, images) for a in shlex.split(cmd)]
        p = subprocess.run(argv, capture_output=True, text=True, env=bed.base_env(),
                           stdin=subprocess.DEVNULL, timeout=60)
        text = (p.stdout + p.stderr).replace(images, README_IMAGES)
        out += text.rstrip('\n').split('\n') if text else ['']
    return out


def make_readme_image(bed):
    """The image of the transcript, in the directory that stands for README_IMAGES."""
    bed.make_image('vm/vm1.qcow2', b'QFI\xfb', mode=0o600)


def start_bed():
    bed = testbed.TestBed()
    bed.start()
    bed.start_daemon()
    make_readme_image(bed)
    return bed


class ReadmeTranscriptTests(testbed.IaTestCase):
    daemon_autostart = True

    def test_readme_transcript_is_what_the_service_says(self):
        make_readme_image(self.bed)
        want = readme_transcript()
        self.assertTrue(any(line.startswith('$ busctl introspect') for line in want))
        got = replay(self.bed, want)
        self.assertEqual(normalize(got), normalize(want),
                         'README.md "At a shell" differs from the live service; the service '
                         'says:\n' + '\n'.join(got))


MAN_CTL = os.path.join(testbed.SOURCE_ROOT, 'data', 'image-accessctl.1')
MAN_IMAGES = '/var/lib/images'


def man_examples(path):
    """The .nf/.fi blocks of the EXAMPLES section of a man page, roff escapes undone and
    continuation lines joined: a list of blocks, each a list of lines."""
    with open(path) as f:
        text = f.read()
    section = text.split('\n.SH EXAMPLES\n', 1)[1].split('\n.SH ', 1)[0]
    blocks = []
    for raw in re.findall(r'\n\.nf\n(.*?)\n\.fi\n', section, re.S):
        lines = []
        for line in raw.replace('\\-', '-').replace('\\e', '\\').split('\n'):
            if lines and lines[-1].endswith('\\'):
                lines[-1] = lines[-1][:-1].rstrip() + ' ' + line.strip()
            else:
                lines.append(line)
        blocks.append(lines)
    return blocks


class ManPageExampleTests(testbed.IaTestCase):
    """image-accessctl(1): the first example (register, grant, list) run as written, against
    the live service, prints the table the man page shows (columns compared word by word)."""

    def test_register_grant_list(self):
        ctl = os.environ.get('IA_CTL')
        if not ctl:
            self.fail('IA_CTL is not set (run through meson test)')
        images = os.path.join(self.bed.images_dir, 'man')
        os.makedirs(images)
        self.bed.make_image('man/vm1.qcow2', b'QFI\xfb')
        block = man_examples(MAN_CTL)[0]
        want, got = [], []
        for line in block:
            if not line.startswith('# '):
                want.append(line.split())
                continue
            argv = [a.replace(MAN_IMAGES, images) for a in shlex.split(line[2:])]
            self.assertEqual(argv[0], 'image-accessctl')
            # the example's user: the bed's emulator uid (the host has no qemu-vm1)
            argv = [ctl] + [a.replace('--uid=qemu-vm1', '--uid=61002') for a in argv[1:]]
            p = subprocess.run(argv, capture_output=True, text=True, env=self.bed.base_env(),
                               stdin=subprocess.DEVNULL, timeout=60)
            self.assertEqual((p.returncode, p.stderr), (0, ''), line)
            if p.stdout:
                got += [out.replace(images, MAN_IMAGES).split()
                        for out in p.stdout.rstrip('\n').split('\n')]
        self.assertTrue(want, 'the example shows output')
        self.assertEqual(got, want)


if __name__ == '__main__':
    if '--print' in sys.argv[1:]:
        b = start_bed()
        try:
            print('\n'.join(replay(b, readme_transcript())))
        finally:
            b.stop()
            b.remove()
    else:
        testbed.main()
