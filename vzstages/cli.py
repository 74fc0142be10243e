"""The `vzstages` command: validate, plan, build, boot, cache."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from doit.cmd_base import TaskLoader2
from doit.doit_cmd import DoitMain
from doit.task import dict_to_task

from .build import DOIT_PLUGINS, Build, find_manifest, load_build, load_plan, setup_console_logging
from .cache.store import Store
from .compiler.explain import explain
from .compiler.plan import compile_plan
from .errors import ManifestError, VzError
from .manifest import load_manifest
from .units import parse_age, parse_size


class PlanLoader(TaskLoader2):
    """Hands doit the tasks of an already compiled plan (the same ones dodo.py yields)."""

    def __init__(self, build: Build):
        super().__init__()
        self.build = build

    def setup(self, opt_values: dict[str, object]) -> None:
        pass

    def load_doit_config(self) -> dict[str, object]:
        return self.build.doit_config

    def load_tasks(self, cmd: object, pos_args: list[str]) -> list[object]:
        return [dict_to_task({"name": t.pop("basename"), **t}) for t in self.build.tasks()]


def cmd_validate(args: argparse.Namespace) -> int:
    """Each manifest on its own: one that fails does not stop the others being checked."""
    failed = 0
    for path in args.manifests:
        try:
            manifest = load_manifest(find_manifest(path))
            # Keys do not matter here: a throw-away secret key, and nothing written to the cache.
            plan = compile_plan(manifest, Store(Path(args.cache).resolve()), secret_key=b"validate" * 4)
        except ManifestError as exc:
            failed += 1
            print(f"{path}: invalid\n" + "\n".join(f"  {p}" for p in exc.problems))
            continue
        except VzError as exc:
            failed += 1
            print(f"{path}: invalid\n  {exc}")
            continue
        for warning in manifest.warnings:
            print(f"  warning: {warning}")
        print(f"{path}: valid; stages: {' -> '.join(s.name for s in plan.stages)}")
    return 1 if failed else 0


def cmd_plan(args: argparse.Namespace) -> int:
    plan = load_plan(args.manifest, args.cache, refresh=args.refresh, publish=not args.no_publish)
    manifest = plan.manifest
    print(f"{manifest.path}: {manifest.image_name} ({manifest.provider})")
    for status in explain(plan):
        stage = status.stage
        print(f"  {stage.name:<9}{status.label:<7}{stage.key[:16]}  {len(stage.tasks)} tasks")
        for reason in status.reasons:
            print(f"{'':20}{reason}")
        if args.verbose:
            for task in stage.tasks:
                print(f"{'':20}. {task.name()}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    build = load_build(args.manifest, args.cache, refresh=args.refresh, publish=not args.no_publish)
    unknown = [s for s in args.stages if s not in {stage.name for stage in build.plan.stages}]
    if unknown:
        raise VzError(
            f"no stage {', '.join(unknown)} in this plan ({' '.join(s.name for s in build.plan.stages)})"
        )
    build.up_to = args.stages
    build.check()  # a clear error now rather than from inside the first stage
    doit_args = ["run", *args.stages]
    if args.verbose:
        setup_console_logging(verbose=True)
    return int(DoitMain(PlanLoader(build), extra_config=DOIT_PLUGINS).run(doit_args))


def cmd_boot(args: argparse.Namespace) -> int:
    from .boottest import boot

    hostname, architecture, firmware = args.hostname, args.arch, args.firmware
    if args.manifest:
        manifest = load_manifest(args.manifest)
        hostname = hostname or manifest.get("system.hostname", "debian")
        architecture = architecture or manifest.get("system.architecture")
        firmware = firmware or manifest.firmware
    report = boot(
        Path(args.image),
        hostname=hostname,
        timeout=args.timeout,
        disk_interface=args.disk,
        snapshot=not args.persist,
        console_log=Path(args.console_log) if args.console_log else None,
        architecture=architecture or "amd64",
        firmware=firmware or "bios",
    )
    for fact, evidence in report.facts.items():
        print(f"  proven   {fact}: {evidence}")
    for fact in report.missing:
        print(f"  MISSING  {fact}")
    verdict = "booted" if report.ok else f"FAILED ({report.failure or 'facts missing'})"
    print(f"{args.image}: {verdict} in {report.seconds:.0f}s")
    return 0 if report.ok else 1


def cmd_cache(args: argparse.Namespace) -> int:
    from .cache import manage

    store = Store(Path(args.cache).resolve())
    store.check_usable()
    if args.action == "ls":
        print("\n".join(manage.list_lines(store)))
        return 0
    if args.action == "gc":
        if args.max_size is None and args.max_age is None:
            raise VzError("cache gc needs --max-size and/or --max-age")
        try:
            max_size = None if args.max_size is None else parse_size(args.max_size)
            max_age = None if args.max_age is None else parse_age(args.max_age)
        except ValueError as exc:
            raise VzError(f"cache gc: {exc}") from None
        deleted = manage.collect(store, max_size, max_age, dry_run=args.dry_run)
        for line in deleted:
            print(("would delete " if args.dry_run else "deleted ") + line)
        print(f"{len(deleted)} entries {'to delete' if args.dry_run else 'deleted'}")
        return 0
    failed = 0
    for name, ok, detail in manage.verify(store):
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}  {detail if not ok else ''}".rstrip())
    return 1 if failed else 0


REFRESH_HELP = (
    "fetch the archive's state now (by default it is refreshed once per "
    "VZSTAGES_ARCHIVE_MAX_AGE, 24h, and stages that download rebuild when it changed)"
)

NO_PUBLISH_HELP = "build the image only: leave out the publish stage (upload and register)"


CACHE_HELP = "checkpoint cache folder (default: ./cache)"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="vzstages", description=__doc__)
    top.add_argument("--cache", default="cache", help=CACHE_HELP)
    # Each subcommand takes --cache too (`vzstages build --cache DIR M`); SUPPRESS keeps the
    # top-level value when a subcommand does not repeat it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", default=argparse.SUPPRESS, help=CACHE_HELP)
    sub = top.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", parents=[common], help="check manifests (no root, no network)")
    p.add_argument("manifests", nargs="+")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("plan", parents=[common], help="show each stage: cached, or run and why")
    p.add_argument("manifest")
    p.add_argument("-v", "--verbose", action="store_true", help="list each stage's tasks")
    p.add_argument("--refresh", action="store_true", help=REFRESH_HELP)
    p.add_argument("--no-publish", action="store_true", help=NO_PUBLISH_HELP)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("build", parents=[common], help="build the image (root)")
    p.add_argument("manifest")
    p.add_argument("stages", nargs="*", help="build only up to these stages (default: all)")
    p.add_argument("-v", "--verbose", action="store_true", help="show every host command on the console")
    p.add_argument("--refresh", action="store_true", help=REFRESH_HELP)
    p.add_argument("--no-publish", action="store_true", help=NO_PUBLISH_HELP)
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("cache", parents=[common], help="list, collect or verify the checkpoint cache")
    p.add_argument("action", choices=["ls", "gc", "verify"])
    p.add_argument(
        "--max-size", help="gc: delete least recently used leaves until the cache is this small (20G)"
    )
    p.add_argument("--max-age", help="gc: delete leaves unused for this long (7d, 12h)")
    p.add_argument("--dry-run", action="store_true", help="gc: only say what would be deleted")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser(
        "boot", parents=[common], help="boot an image in QEMU and report what its console proved"
    )
    p.add_argument("image")
    p.add_argument("--manifest", help="take the hostname, architecture and firmware from this manifest")
    p.add_argument("--arch", choices=["amd64", "arm64"], help="the image's architecture (default amd64)")
    p.add_argument("--firmware", choices=["bios", "uefi"], help="boot with SeaBIOS or UEFI (default bios)")
    p.add_argument("--hostname", help="the hostname the login prompt must show")
    p.add_argument("--timeout", type=float, default=300, help="seconds before giving up (default 300)")
    p.add_argument("--disk", choices=["virtio", "nvme", "ide", "sata"], default="virtio")
    p.add_argument(
        "--persist", action="store_true", help="keep the guest's writes (default: a throw-away snapshot)"
    )
    p.add_argument("--console-log", help="write the serial console to this file")
    p.set_defaults(func=cmd_boot)
    return top


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `vzstages plan M | head` is not an error
    try:
        args = parser().parse_args(argv)
    except KeyboardInterrupt:
        return 130
    try:
        return int(args.func(args))
    except ManifestError as exc:
        print("error: invalid manifest\n" + "\n".join(f"  {p}" for p in exc.problems), file=sys.stderr)
        return 2
    except VzError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so in one line; VZSTAGES_DEBUG=1 shows the traceback
        if os.environ.get("VZSTAGES_DEBUG"):
            raise
        print(
            f"error: internal error ({type(exc).__name__}: {exc}); VZSTAGES_DEBUG=1 shows where",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
