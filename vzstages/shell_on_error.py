"""`vzstages build --shell-on-error`: a shell in a failing stage's own tree before it is unwound
(on a terminal), or the `vzstages shell` line that opens the tree it started from (without one).

The stage runtime calls this, so its code enters every stage key (compiler/code.py): it stays
small, and what it does cannot change a checkpoint (a failed stage is never published).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model.info import BuildInfo
    from .volume.disk import Tree

progress = logging.getLogger("vzstages.progress")
SHELL_ON_ERROR_ENV = "VZSTAGES_SHELL_ON_ERROR"
DEFAULT_SHELL = ["/bin/sh", "-c", "if [ -x /bin/bash ]; then exec /bin/bash -l; else exec /bin/sh -l; fi"]


def offer_shell(info: BuildInfo, tree: Tree, manifest: Path, parent: str | None) -> None:
    """After a task failed: a shell in the stage's tree (on a terminal, with --shell-on-error),
    or the command that opens one in the tree the stage started from."""
    if os.environ.get(SHELL_ON_ERROR_ENV) != "1":
        return
    if sys.stdin.isatty() and sys.stdout.isatty():
        progress.warning("%s failed: a shell in its tree (exit to unwind the stage)", info.stage)
        try:
            tree.chroot_attached(DEFAULT_SHELL)
        except Exception as exc:  # the stage's own error is the one to report
            progress.warning("no shell in the tree: %s", exc)
        return
    where = f" {parent}" if parent else ""
    progress.warning(
        "%s failed; no terminal for a shell. The tree it started from: vzstages --cache %s shell %s%s",
        info.stage,
        shlex.quote(str(info.runs.parent)),
        shlex.quote(str(manifest)),
        where,
    )
