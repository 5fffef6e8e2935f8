"""kvstore benchmarks.

Two tools share this package:

- the asv suite (one module per area: engine, batch, codec, memory, expiry,
  server), which tracks kvstore's own hot paths commit by commit;
- ``python -m benchmarks.compare``, which measures kvstore beside dict,
  cachetools, Redis and memcached in one interleaved run and writes a table
  and charts under ``benchmarks/results/``.

asv imports every module here to discover benchmarks, so no module does any
work at import time: data is made in ``setup`` and servers are started there.
See docs/benchmarks.md for how to run both.
"""

import importlib.machinery as _machinery
import os as _os
import sys as _sys


def _prefer_installed_kvstore() -> None:
    """Let ``import kvstore`` find the installed build, not this checkout's
    source folder.

    ``python -m benchmarks.compare`` puts the working directory, the
    checkout, first on sys.path, and its kvstore/ holds only the .pyx
    sources after a regular ``pip install '.[bench]'``: every kvstore row
    then failed with "No module named 'kvstore._engine'". The checkout moves
    to the end of sys.path, behind site-packages, unless its kvstore/ is
    built in place (an editable install or ``build_ext --inplace``), in
    which case it is the build meant. ``benchmarks`` itself is already
    imported, so its submodules still load from here. asv imports this
    package without putting the checkout on sys.path, so there this does
    nothing.
    """
    root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    source = _os.path.join(root, "kvstore")
    built = any(_os.path.exists(_os.path.join(source, "_engine" + suffix))
                for suffix in _machinery.EXTENSION_SUFFIXES)
    if built or not _os.path.isdir(source):
        return
    here = [p for p in _sys.path if _os.path.realpath(p or _os.curdir) == _os.path.realpath(root)]
    if here:
        _sys.path[:] = [p for p in _sys.path if p not in here] + [root]


_prefer_installed_kvstore()
