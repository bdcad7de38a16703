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

"""The defect switch: run a history on vfpool with a defect put back.

A defect is a patch kept here, ``defects/NN-name.patch``, against the
``vfpool/`` tree (the reverse of the source diff of the commit that
fixed it).  :func:`patched_tree` copies ``vfpool/`` to a temporary
directory and applies the patches there; the runner then runs its
servers and its clients from that copy (``PYTHONPATH``), so the code
under test is never modified in place.

``python -m vfpool.tests.functional.histories.defects make NN-name
COMMIT`` writes the patch of a fix commit (its diff of ``vfpool/``
outside ``vfpool/tests``, reversed); ``list`` shows the patches kept.
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PATCHES = os.path.join(HERE, 'defects')
#: The directory that holds the ``vfpool`` package being run.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    HERE))))


def available() -> dict[str, str]:
    """``NN`` -> the path of its patch."""
    found = {}
    for path in sorted(glob.glob(os.path.join(PATCHES, '*.patch'))):
        name = os.path.basename(path)
        found[name.split('-', 1)[0]] = path
    return found


def find(defect: str) -> str:
    patches = available()
    key = defect.split('-', 1)[0].zfill(2)
    if key not in patches:
        raise SystemExit('no defect %s; kept: %s' % (
            defect, ', '.join(os.path.basename(p)
                              for p in patches.values()) or 'none'))
    return patches[key]


def patched_tree(defects: list[str]) -> str:
    """A temporary copy of ``vfpool/`` with the defects' patches applied.

    Returns the directory to put first on ``PYTHONPATH``; the caller
    removes it.
    """
    tree = tempfile.mkdtemp(prefix='vfpool-defect-')
    shutil.copytree(os.path.join(ROOT, 'vfpool'),
                    os.path.join(tree, 'vfpool'),
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
    for defect in defects:
        path = find(defect)
        done = subprocess.run(['patch', '-p1', '-d', tree, '-i', path,
                               '--batch', '--forward'],
                              capture_output=True, text=True)
        if done.returncode:
            shutil.rmtree(tree, ignore_errors=True)
            raise SystemExit('defect %s does not apply to this tree:\n%s%s'
                             % (os.path.basename(path), done.stdout,
                                done.stderr))
    return tree


def make(name: str, commit: str, repo: str = ROOT) -> str:
    """Write ``defects/<name>.patch``: the fix ``commit`` undone.

    ``commit`` is one commit (a merge: the whole branch it merged), or
    ``BASE..TIP`` for a series of commits.
    """
    base, _, tip = commit.rpartition('..')
    if not base:
        base, tip = '%s^' % commit, commit
    diff = subprocess.run(
        ['git', '-C', repo, 'diff', tip, base, '--',
         'vfpool', ':(exclude)vfpool/tests'],
        capture_output=True, text=True, check=True).stdout
    if not diff.strip():
        raise SystemExit('%s changes nothing under vfpool/ outside the '
                         'tests' % commit)
    path = os.path.join(PATCHES, '%s.patch' % name)
    with open(path, 'w') as f:
        f.write(diff)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='defects', description=__doc__,
                                     formatter_class=argparse.
                                     RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    mk = sub.add_parser('make', help='the patch of a fix commit, reversed')
    mk.add_argument('name', help='NN-short-name, e.g. 04-allocate-after-'
                                 'release')
    mk.add_argument('commit', help='the fix: a commit (a merge commit '
                                   'for a branch) or BASE..TIP')
    sub.add_parser('list')
    check = sub.add_parser('check', help='whether the patches apply')
    check.add_argument('defects', nargs='*')
    args = parser.parse_args(argv)
    if args.command == 'make':
        print(make(args.name, args.commit))
    elif args.command == 'list':
        for key, path in available().items():
            print(os.path.basename(path))
    else:
        for defect in args.defects or list(available()):
            tree = patched_tree([defect])
            shutil.rmtree(tree, ignore_errors=True)
            print('%s applies' % os.path.basename(find(defect)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
