#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""libvirt-python, imported here and nowhere else because it is optional.

vfpool-server, vfpool-manage and vfpool-status run without it.  The
agent, the compute plugin and ``vfpool-manage audit --libvirt-uri`` need
it; they get it with the ``libvirt`` extra (vfpool is not on PyPI: ``pip
install '.[libvirt]'`` in a checkout, or ``pip install
'vfpool-<version>-py3-none-any.whl[libvirt]'``), whose build needs
pkg-config, a C compiler and libvirt's development files (``bindep
quickstart`` lists them).

Modules that need libvirt import it with::

    from vfpool.libvirt_import import libvirt

Without libvirt-python that line raises :class:`LibvirtMissing`, an
``ImportError`` whose message says what to install; console scripts
print that message as their one-line error.
"""

import importlib
import sys
import types
import typing

if typing.TYPE_CHECKING:
    # What the name below resolves to at run time, for the type checker.
    import libvirt  # noqa: F401

#: The setup.cfg extra that brings libvirt-python.
EXTRA = 'libvirt'
MESSAGE = ('libvirt-python is not installed; install vfpool with its %s '
           'extra, from a checkout (pip install ".[%s]") or a built wheel '
           '(pip install "vfpool-<version>-py3-none-any.whl[%s]"); building '
           'it needs pkg-config, a C compiler and libvirt\'s development '
           'files' % (EXTRA, EXTRA, EXTRA))


class LibvirtMissing(ImportError):
    """libvirt-python cannot be imported; the message names the extra."""

    def __init__(self) -> None:
        super().__init__(MESSAGE, name='libvirt')


def load() -> types.ModuleType:
    """The ``libvirt`` module, or :class:`LibvirtMissing`."""
    try:
        return importlib.import_module('libvirt')
    except ImportError as exc:
        raise LibvirtMissing() from exc


def fail(program: str, error: LibvirtMissing) -> int:
    """Print ``error`` as ``program``'s one-line error; the exit status."""
    print('%s: %s' % (program, error), file=sys.stderr)
    return 1


def __getattr__(name: str) -> types.ModuleType:
    # ``from vfpool.libvirt_import import libvirt`` lands here (PEP 562).
    if name == 'libvirt':
        return load()
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
