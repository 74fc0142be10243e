"""`vzstages shell MANIFEST [STAGE] [-- CMD...]`: into a stage's tree, as `mkosi shell` is.

The stage's checkpoint is opened under a throw-away overlay (volume/disk.py `opened_readonly`):
whatever the shell changes is gone when it exits, and the checkpoint, its digest and every chain
built on it stay as they were. With a command, it runs there and its exit status is returned.

`vzstages build --shell-on-error` opens a shell in a failing stage's own tree (shell_on_error.py).
"""

from __future__ import annotations

import argparse

from .errors import VzError
from .host import Host, require_build_host
from .shell_on_error import DEFAULT_SHELL


def cmd_shell(args: argparse.Namespace) -> int:
    from .build import load_plans
    from .volume.disk import opened_readonly
    from .volume.runs import run_folder

    plan = load_plans([args.manifest], args.cache, refresh=False, publish=False, remote=None)[0]
    disk = [s for s in plan.stages if s.disk]
    wanted = args.stage or disk[-1].name
    stage = next((s for s in disk if s.name == wanted), None)
    if stage is None:
        raise VzError(f"no stage {wanted} with a tree in this plan ({' '.join(s.name for s in disk)})")
    if plan.hit(stage, touch=True) is None:
        raise VzError(
            f"stage {stage.name} of {args.manifest} is not in the cache {args.cache}: "
            f"vzstages --cache {args.cache} build {args.manifest} {stage.name}"
        )
    require_build_host()
    command = args.argv or DEFAULT_SHELL
    disk_chain = disk[: disk.index(stage) + 1]
    plan.store.hold([(s.name, s.key) for s in disk_chain])  # gc leaves them while the shell runs
    host = Host()
    with (
        run_folder(plan.store.runs, f"shell-{stage.name}") as folder,
        opened_readonly(host, plan.checkpoint(stage), plan.manifest.layout, folder) as tree,
    ):
        if not args.argv:
            print(f"{stage.name} of {plan.manifest.image_name}: a throw-away copy; exit to leave it")
        return tree.chroot_attached(command)


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
