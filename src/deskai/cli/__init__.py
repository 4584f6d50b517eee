"""deskai's command line: one verb per user task, each a thin call into the library.

Each module below registers its verbs on the shared ``app``; importing them is what adds them.
"""

from __future__ import annotations

# importing the verb modules is what registers their verbs
import deskai.cli.agent  # noqa: F401
import deskai.cli.mcp  # noqa: F401
import deskai.cli.verify  # noqa: F401
from deskai.cli import bench, models, planner, pull, serving, tune  # noqa: F401
from deskai.cli._app import app, main, run_app

__all__ = ["app", "main", "run_app"]
