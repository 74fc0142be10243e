"""`vzstages shell MANIFEST [STAGE] [-- CMD...]`: into a stage's tree, as `mkosi shell` is.

The stage's checkpoint is opened under a throw-away overlay (volume/disk.py `opened_readonly`):
whatever the shell changes is gone when it exits, and the checkpoint, its digest and every chain
built on it stay as they were. With a command, it runs there and its exit status is returned.

`vzstages build --shell-on-error` opens a shell in a failing stage's own tree (shell_on_error.py).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import VzError
from .host import Host, require_build_host
from .shell_on_error import DEFAULT_SHELL

if TYPE_CHECKING:
    from .compiler.plan import CompiledStage, Plan
    from .volume.disk import Tree


@contextlib.contextmanager
def stage_tree(
    manifest: str | Path, cache: str | Path, wanted: str | None, label: str
) -> Iterator[tuple[Plan, CompiledStage, Tree]]:
    """A disk stage's tree (the last one unless `wanted` names one) from the cache, under a
    throw-away overlay: `vzstages shell` and `diff --files` read trees this way. Its chain is held
    while the block runs, so gc leaves it alone."""
    from .build import load_plans
    from .volume.disk import opened_readonly
    from .volume.runs import run_folder

    plan = load_plans([manifest], cache, refresh=False, publish=False, remote=None)[0]
    disk = [s for s in plan.stages if s.disk]
    stage = next((s for s in disk if s.name == (wanted or disk[-1].name)), None)
    if stage is None:
        raise VzError(f"no stage {wanted} with a tree in this plan ({' '.join(s.name for s in disk)})")
    if plan.hit(stage, touch=True) is None:
        raise VzError(
            f"stage {stage.name} of {manifest} is not in the cache {cache}: "
            f"vzstages --cache {cache} build {manifest} {stage.name}"
        )
    require_build_host()
    plan.store.hold([(s.name, s.key) for s in disk[: disk.index(stage) + 1]])
    with (
        run_folder(plan.store.runs, f"{label}-{stage.name}") as folder,
        opened_readonly(Host(), plan.checkpoint(stage), plan.manifest.layout, folder) as tree,
    ):
        yield plan, stage, tree


def cmd_shell(args: argparse.Namespace) -> int:
    with stage_tree(args.manifest, args.cache, args.stage, "shell") as (plan, stage, tree):
        if not args.argv:
            print(f"{stage.name} of {plan.manifest.image_name}: a throw-away copy; exit to leave it")
        return tree.chroot_attached(args.argv or DEFAULT_SHELL)


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shell",
        usage="vzstages shell [--cache DIR] MANIFEST [STAGE] [-- COMMAND...]",
        help="a shell, or a command after --, in a throw-away copy of a stage's tree",
    )
    p.add_argument("--cache", default=argparse.SUPPRESS, help="checkpoint cache folder (default: ./cache)")
    p.add_argument("manifest")
    p.add_argument("stage", nargs="?", help="the stage whose tree to open (default: the last one)")
    p.set_defaults(func=cmd_shell, argv=[])
