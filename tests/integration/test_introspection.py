#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""
The running image-accessd introspects exactly as dbus-interfaces/org.example.ImageAccess.xml
says.  The daemon's vtable is written by hand, so this is what keeps the contract and the code
together (STYLE.md §12: an XML change without the matching vtable change blocks a review).

Compared, for both of our interfaces (org.freedesktop.DBus.* is ignored, so are annotations,
doc: or not): the set of interfaces; the set of methods and, per method, its arguments in order
as (name, type, direction); the properties as (name, type, access); the signals and their
arguments in order as (name, type).  A difference fails with a unified diff of one-line-per-member
renderings of both sides.

CompareTests checks the comparison itself against deliberately altered copies of the contract,
so that a comparison that silently sees nothing cannot pass for a vtable that matches.
"""

import difflib
import os
import sys
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testbed  # noqa: E402

CONTRACT = os.path.join(testbed.SOURCE_ROOT, 'dbus-interfaces', 'org.example.ImageAccess.xml')
OUR_INTERFACES = (testbed.IFACE, testbed.MANAGER_IFACE, 'org.example.ImageAccess.Notify')
STANDARD_PREFIX = 'org.freedesktop.DBus.'


class ContractError(Exception):
    """The XML cannot be read as an introspection document."""


def _parse(xml_text):
    # The contract has a DOCTYPE with an external DTD: ElementTree never fetches it.
    try:
        return ET.fromstring(xml_text)
    except ET.ParseError as e:
        raise ContractError('not well-formed introspection XML: %s' % e) from None


def interface_model(xml_text, ignore_standard=True):
    """{interface: {'methods': {name: [(arg, type, dir)]}, 'properties': {name: (type, access)},
    'signals': {name: [(arg, type)]}}} of the top-level node.  Annotations are dropped; a method
    argument without direction is 'in' (the introspection DTD's default)."""
    root = _parse(xml_text)
    if root.tag != 'node':
        raise ContractError('the root element is <%s>, not <node>' % root.tag)
    model = {}
    for iface in root.findall('interface'):
        name = iface.get('name')
        if ignore_standard and name.startswith(STANDARD_PREFIX):
            continue
        if name in model:
            raise ContractError('interface %s appears twice' % name)
        entry = {'methods': {}, 'properties': {}, 'signals': {}}
        for kind, tag in (('methods', 'method'), ('signals', 'signal')):
            for member in iface.findall(tag):
                mname = member.get('name')
                if mname in entry[kind]:
                    raise ContractError('%s.%s appears twice' % (name, mname))
                args = []
                for arg in member.findall('arg'):
                    if kind == 'methods':
                        args.append((arg.get('name'), arg.get('type'),
                                     arg.get('direction', 'in')))
                    else:
                        args.append((arg.get('name'), arg.get('type')))
                entry[kind][mname] = args
        for prop in iface.findall('property'):
            pname = prop.get('name')
            if pname in entry['properties']:
                raise ContractError('property %s.%s appears twice' % (name, pname))
            entry['properties'][pname] = (prop.get('type'), prop.get('access'))
        model[name] = entry
    return model


def render(model, interfaces=None):
    """One line per member, stable order: what the diff is made of."""
    lines = []
    for iface in sorted(model if interfaces is None else interfaces):
        if iface not in model:
            lines.append('interface %s: MISSING' % iface)
            continue
        lines.append('interface %s' % iface)
        entry = model[iface]
        for name in sorted(entry['methods']):
            args = ', '.join('%s %s %s' % (d, t, n) for n, t, d in entry['methods'][name])
            lines.append('  method %s(%s)' % (name, args))
        for name in sorted(entry['properties']):
            t, access = entry['properties'][name]
            lines.append('  property %s %s %s' % (access, t, name))
        for name in sorted(entry['signals']):
            args = ', '.join('%s %s' % (t, n) for n, t in entry['signals'][name])
            lines.append('  signal %s(%s)' % (name, args))
    return lines


def compare(expected_xml, actual_xml, expected_label='contract', actual_label='daemon'):
    """'' when both describe the same interfaces (ours only, annotations ignored), else a
    unified diff of their renderings."""
    expected = interface_model(expected_xml)
    actual = interface_model(actual_xml)
    names = set(expected) | set(actual)
    exp_lines = render(expected, names)
    act_lines = render(actual, names)
    if exp_lines == act_lines and expected == actual:
        return ''
    diff = '\n'.join(difflib.unified_diff(exp_lines, act_lines, expected_label, actual_label,
                                          lineterm='', n=2))
    return diff or 'models differ: %r != %r' % (expected, actual)  # render() lost a detail


def read_contract():
    with open(CONTRACT) as f:
        return f.read()


class IntrospectionTests(testbed.IaTestCase):
    """Against the running daemon."""

    def introspect(self, caller, path=testbed.OBJECT_PATH):
        r = caller.call('Introspect', iface='org.freedesktop.DBus.Introspectable', path=path)
        return self.assertOk(r, 'Introspect %s' % path)[0]

    def test_introspection_matches_contract(self):
        # As an unprivileged caller: that is who generates bindings from it in practice, and
        # the bus policy must let it through.
        actual = self.introspect(self.bed.agent('ia-emu1'))
        diff = compare(read_contract(), actual)
        if diff:
            self.fail('the daemon\'s introspection differs from %s (- contract, + daemon):\n%s'
                      % (os.path.relpath(CONTRACT, testbed.SOURCE_ROOT), diff))
        # Both interfaces really are there (an empty model on both sides would compare equal)
        model = interface_model(actual)
        self.assertEqual(sorted(model), sorted(OUR_INTERFACES))
        self.assertIn('OpenImage', model[testbed.IFACE]['methods'])
        # The same from root (no per-caller filtering of the object)
        self.assertEqual(compare(actual, self.introspect(self.bed.local)), '')

    def test_properties_have_the_declared_types(self):
        """GetAll returns exactly the declared readable properties, with their types."""
        model = interface_model(read_contract())
        signature_of = {'String': 's', 'Boolean': 'b', 'UInt32': 'u', 'Int32': 'i',
                        'UInt64': 't', 'Int64': 'x', 'Double': 'd', 'ObjectPath': 'o'}
        for iface in OUR_INTERFACES:
            props = self.bed.bus.call_blocking(testbed.BUS_NAME, testbed.OBJECT_PATH,
                                               'org.freedesktop.DBus.Properties', 'GetAll', 's',
                                               [iface])
            got = {str(k): signature_of.get(type(v).__name__, type(v).__name__)
                   for k, v in props.items()}
            want = {k: t for k, (t, access) in model[iface]['properties'].items()
                    if access in ('read', 'readwrite')}
            self.assertEqual(got, want, iface)
        version = self.bed.bus.call_blocking(testbed.BUS_NAME, testbed.OBJECT_PATH,
                                             'org.freedesktop.DBus.Properties', 'Get', 'ss',
                                             [testbed.IFACE, 'Version'])
        self.assertTrue(str(version), 'Version is not empty')
        # read-only means read-only
        r = self.bed.local.call('Set', 'ssv', [testbed.IFACE, 'Version', 'hacked'],
                                iface='org.freedesktop.DBus.Properties')
        self.assertFalse(r.ok, r)
        self.assertEqual(self.bed.bus.call_blocking(
            testbed.BUS_NAME, testbed.OBJECT_PATH, 'org.freedesktop.DBus.Properties', 'Get',
            'ss', [testbed.IFACE, 'Version']), version)


class CompareTests(unittest.TestCase):
    """compare() against mutated copies of the contract: no daemon needed."""

    @classmethod
    def setUpClass(cls):
        cls.xml = read_contract()

    def mutate(self, old, new, count=1):
        self.assertEqual(self.xml.count(old), count, 'mutation anchor %r' % old)
        return self.xml.replace(old, new)

    def assertDetected(self, mutated, *fragments):
        diff = compare(self.xml, mutated)
        self.assertTrue(diff, 'the mutation went unnoticed')
        for frag in fragments:
            self.assertIn(frag, diff)
        return diff

    def test_identical_and_annotations_ignored(self):
        self.assertEqual(compare(self.xml, self.xml), '')
        model = interface_model(self.xml)
        self.assertEqual(sorted(model), sorted(OUR_INTERFACES))
        self.assertEqual(sorted(model[testbed.MANAGER_IFACE]['methods']),
                         ['BindProcess', 'GrantImage', 'ListGrants', 'ListGuests',
                          'RegisterGuest', 'RevokeImage', 'Subscribe', 'UnregisterGuest'])
        # doc: annotations, other annotations, comments, a standard interface and the node
        # name do not count
        stripped = ET.tostring(_strip_annotations(_parse(self.xml)), encoding='unicode')
        self.assertNotIn('doc:summary', stripped)
        self.assertEqual(compare(self.xml, stripped), '')
        extra = self.mutate('<property name="Version" type="s" access="read">',
                            '<property name="Version" type="s" access="read">\n<annotation '
                            'name="org.freedesktop.DBus.Property.EmitsChangedSignal" '
                            'value="const"/>')
        extra = extra.replace('<node name="/org/example/ImageAccess"', '<node')
        extra = extra.replace('</node>', '<interface name="org.freedesktop.DBus.Peer">'
                              '<method name="Ping"/></interface></node>')
        self.assertEqual(compare(self.xml, extra), '')

    def test_argument_changes_detected(self):
        # renamed
        self.assertDetected(self.mutate('<arg type="h" name="fd" direction="out">',
                                        '<arg type="h" name="fdx" direction="out">'),
                            '-  method OpenImage(', '+  method OpenImage(', 'out h fdx')
        # retyped
        self.assertDetected(self.mutate('<arg type="h" name="pidfd" direction="in">',
                                        '<arg type="i" name="pidfd" direction="in">'),
                            'in i pidfd')
        # direction flipped
        self.assertDetected(self.mutate('<arg type="a(ssa{sv})" name="grants" direction="out">',
                                        '<arg type="a(ssa{sv})" name="grants" direction="in">'),
                            'ListGrants(in s guest, in a(ssa{sv}) grants)')
        # direction left out on an out argument: defaults to in
        self.assertDetected(self.mutate('<arg type="a(sa{sv})" name="guests" direction="out">',
                                        '<arg type="a(sa{sv})" name="guests">'))
        # an argument added
        self.assertDetected(self.mutate(
            '<arg type="s" name="guest" direction="in">\n        <annotation name="doc:summary" '
            'value="The guest"/>\n      </arg>\n      <arg type="h"',
            '<arg type="s" name="guest" direction="in"/><arg type="s" name="extra" '
            'direction="in"/>\n      <arg type="h"'), 'in s extra')

    def test_argument_order_detected(self):
        root = _parse(self.xml)
        for iface in root.findall('interface'):
            for m in iface.findall('method'):
                if m.get('name') == 'OpenImage':
                    args = m.findall('arg')
                    guest, path = args[0], args[1]
                    m.remove(guest)
                    m.insert(list(m).index(path) + 1, guest)
        swapped = ET.tostring(root, encoding='unicode')
        self.assertDetected(swapped, 'OpenImage(in s path, in s guest')

    def test_member_changes_detected(self):
        # a method removed
        root = _parse(self.xml)
        mgr = [i for i in root.findall('interface') if i.get('name') == testbed.MANAGER_IFACE][0]
        mgr.remove([m for m in mgr.findall('method') if m.get('name') == 'ListGuests'][0])
        self.assertDetected(ET.tostring(root, encoding='unicode'), '-  method ListGuests(')
        # a method renamed
        self.assertDetected(self.mutate('<method name="OpenImage">', '<method name="Open">'),
                            '+  method Open(')
        # a method moved to the other interface
        root = _parse(self.xml)
        ifaces = {i.get('name'): i for i in root.findall('interface')}
        m = [m for m in ifaces[testbed.MANAGER_IFACE].findall('method')
             if m.get('name') == 'BindProcess'][0]
        ifaces[testbed.MANAGER_IFACE].remove(m)
        ifaces[testbed.IFACE].append(m)
        self.assertDetected(ET.tostring(root, encoding='unicode'), 'BindProcess')
        # an interface renamed (so also: one missing, one extra)
        diff = self.assertDetected(self.mutate('<interface name="org.example.ImageAccess.Manager">',
                                               '<interface name="org.example.ImageAccess.Admin">'))
        self.assertIn('interface org.example.ImageAccess.Manager: MISSING', diff)
        self.assertIn('-interface org.example.ImageAccess.Manager', diff)

    def test_property_changes_detected(self):
        self.assertDetected(self.mutate('access="read"', 'access="readwrite"'),
                            'property readwrite s Version')
        self.assertDetected(self.mutate('<property name="Version" type="s"',
                                        '<property name="Version" type="u"'),
                            'property read u Version')
        self.assertDetected(self.mutate('<property name="Version" type="s" access="read">',
                                        '<property name="Version" type="s" access="read"/>'
                                        '<property name="Extra" type="b" access="read">'),
                            '+  property read b Extra')

    def test_signal_changes_detected(self):
        grants_changed = ('<signal name="GrantsChanged">\n      <annotation name="doc:summary" '
                          'value="A guest\'s grants changed; call ListGrants to see them"/>\n'
                          '      <arg type="s" name="guest">')
        # dropping a doc: annotation is not a change
        self.assertEqual(compare(self.xml, self.mutate(
            '<annotation name="doc:summary" value="A guest was registered"/>', '')), '')
        registered = ('<signal name="GuestRegistered">\n      <annotation name="doc:summary" '
                      'value="A guest was registered"/>')
        self.assertDetected(self.mutate(registered,
                                        registered.replace('GuestRegistered', 'GuestAdded')),
                            '-  signal GuestRegistered(s name)', '+  signal GuestAdded(s name)')
        self.assertDetected(self.mutate(grants_changed,
                                        grants_changed.replace('type="s"', 'type="o"')),
                            'signal GrantsChanged(o guest)')
        self.assertDetected(self.mutate(grants_changed,
                                        grants_changed.replace('name="guest"', 'name="name"')),
                            'signal GrantsChanged(s name)')
        # a second signal argument
        # (in both interfaces that carry it: Manager and Notify)
        self.assertDetected(self.mutate('<signal name="GuestUnregistered">',
                                        '<signal name="GuestUnregistered"><arg type="b" '
                                        'name="forced"/>', count=2),
                            'signal GuestUnregistered(b forced, s name)')
        # a signal removed
        root = _parse(self.xml)
        mgr = [i for i in root.findall('interface') if i.get('name') == testbed.MANAGER_IFACE][0]
        mgr.remove([m for m in mgr.findall('signal') if m.get('name') == 'GrantsChanged'][0])
        self.assertDetected(ET.tostring(root, encoding='unicode'), '-  signal GrantsChanged(')

    def test_malformed_input_is_an_error(self):
        with self.assertRaises(ContractError):
            compare(self.xml, '<node><interface name="x">')
        with self.assertRaises(ContractError):
            compare(self.xml, '<interface name="x"/>')
        with self.assertRaises(ContractError):
            compare(self.xml, self.mutate('</interface>\n</node>',
                                          '</interface>\n<interface name="org.example.'
                                          'ImageAccess"/></node>'))


def _strip_annotations(elem):
    for child in list(elem):
        if child.tag == 'annotation':
            elem.remove(child)
        else:
            _strip_annotations(child)
    return elem


if __name__ == '__main__':
    testbed.main()
