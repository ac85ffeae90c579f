"""For every test under apps/: ops_kit from the checkout (apps/ops-kit/src), ahead of the copy
installed in the venv, so that the apps' and the kit's tests always test the kit as it is here.
(The engine's local runtime runs the apps with the installed copy: `make venv` installs it.)"""

from __future__ import annotations

import sys
from pathlib import Path

KIT_SRC = Path(__file__).resolve().parent / "ops-kit" / "src"
if str(KIT_SRC) not in sys.path:
    sys.path.insert(0, str(KIT_SRC))
