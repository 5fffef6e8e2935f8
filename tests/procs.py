"""How tests start a kvstore-server process that runs the installed build.

`python -m kvstore` from a source checkout would put the working directory
(the uncompiled kvstore/ folder) first on sys.path; PYTHONSAFEPATH prevents
that only from 3.11 on. The console script that pip installed beside the
interpreter has no such problem on any version, and it is what users run.
"""

from __future__ import annotations

import sys
from pathlib import Path

_SCRIPT = Path(sys.executable).with_name("kvstore-server")

# Without the script (an unusual install), run the module with the working
# directory taken off sys.path first.
SERVER_COMMAND: list[str] = (
    [str(_SCRIPT)] if _SCRIPT.exists() else
    [sys.executable, "-c",
     "import runpy, sys; del sys.path[0]; runpy.run_module('kvstore', run_name='__main__')"])
