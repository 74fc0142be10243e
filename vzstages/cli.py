"""The `vzstages` command: validate, plan, build, boot, cache."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

from doit.cmd_base import TaskLoader2
from doit.doit_cmd import DoitMain
from doit.loader import generate_tasks

from . import __version__
from .build import (
    DOIT_PLUGINS,
    Build,
    expand_manifests,
    load_build,
    load_plans,
    setup_console_logging,
)
from .cache.record import STAGE_NAMES
from .cache.remote import Remote
from .cache.remote_config import RemoteConfig, remote_config
from .cache.signing import load_signing_key
from .cache.store import Store, cache_folder
from .compiler.explain import explain
from .compiler.plan import compile_plan
from .errors import ManifestError, VzError
from .evidence.commands import add_commands
from .evidence.writer import SIGNING_KEY_ENV
from .manifest import load_manifest
from .units import human_size, parse_age, parse_size


class PlanLoader(TaskLoader2):
    """Hands doit the tasks of already compiled plans (the same ones dodo.py yields)."""

    def __init__(self, build: Build):
        super().__init__()
        self.build = build

    def setup(self, opt_values: dict[str, object]) -> None:
        pass

    def load_doit_config(self) -> dict[str, object]:
        return self.build.doit_config

    def load_tasks(self, cmd: object, pos_args: list[str]) -> list[object]:
        return list(generate_tasks("stages", self.build.tasks()))


CONFIGURED = "-"  # `cache ls --remote` with no URL: the remote VZSTAGES_REMOTE names


def remote_of(args: argparse.Namespace) -> RemoteConfig | None:
    url = None if args.remote == CONFIGURED else args.remote
    keys = (args.remote_signing_key, args.remote_trusted_keys)
    return remote_config(url, args.remote_mode, args.remote_endpoint, *keys)


def cmd_validate(args: argparse.Namespace) -> int:
    """Each manifest on its own: one that fails does not stop the others being checked."""
    failed = 0
    for path in expand_manifests(args.manifests):
        try:
            manifest = load_manifest(path)
            # Keys do not matter here: a throw-away secret key, and no cache at all.
            plan = compile_plan(manifest, Store(Path(os.devnull)), secret_key=b"validate" * 4)
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
    plans = load_plans(
        args.manifests, args.cache, refresh=args.refresh, publish=not args.no_publish, remote=remote_of(args)
    )
    for plan in plans:
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


def split_targets(targets: list[str]) -> tuple[list[str], list[str]]:
    """`vzstages build a.yml b.yml` and `vzstages build a.yml image`: manifests, then stages."""
    manifests = [t for t in targets if t not in STAGE_NAMES or Path(t).exists()]
    stages = [t for t in targets if t not in manifests]
    if not manifests:
        raise VzError("which manifest? (vzstages build MANIFEST [MANIFEST...] [STAGE...])")
    return manifests, stages


def cmd_build(args: argparse.Namespace) -> int:
    manifests, stages = split_targets(args.targets)
    build = load_build(
        manifests, args.cache, refresh=args.refresh, publish=not args.no_publish, remote=remote_of(args)
    )
    if stages and len(build.plans) > 1:
        raise VzError("stages can be named with one manifest only")
    if stages:
        known = [s.name for s in build.plan.stages]
        unknown = [s for s in stages if s not in known]
        if unknown:
            raise VzError(f"no stage {', '.join(unknown)} in this plan ({' '.join(known)})")
    build.up_to = stages
    use_signing_key(args.signing_key or os.environ.get(SIGNING_KEY_ENV))
    if args.verbose:
        setup_console_logging(verbose=True)
    build.prepare()  # a clear error now rather than from inside the first stage
    doit_args = ["run", *stages]
    if args.jobs > 1:
        doit_args += ["-n", str(args.jobs)]
    try:
        return int(DoitMain(PlanLoader(build), extra_config=DOIT_PLUGINS).run(doit_args))
    finally:
        build.finish()


def use_signing_key(path: str | None) -> None:
    """Checked now (a clear error before any stage runs); the reporter signs with it."""
    if path:
        load_signing_key(Path(path))
        os.environ[SIGNING_KEY_ENV] = str(Path(path).resolve())


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


def gc_limits(args: argparse.Namespace) -> tuple[int | None, float | None]:
    if args.max_size is None and args.max_age is None:
        raise VzError("cache gc needs --max-size and/or --max-age")
    try:
        max_size = None if args.max_size is None else parse_size(args.max_size)
        max_age = None if args.max_age is None else parse_age(args.max_age)
    except ValueError as exc:
        raise VzError(f"cache gc: {exc}") from None
    return max_size, max_age


def cmd_cache(args: argparse.Namespace) -> int:
    from .cache import manage, remote_manage

    store = Store(cache_folder(args.cache))
    store.check_usable()
    config = remote_of(args)
    on_remote = args.remote is not None  # ls and gc look after the remote when --remote is given
    if args.action in ("push", "pull") or on_remote:
        if config is None:
            raise VzError(
                f"cache {args.action} needs a remote: --remote s3://BUCKET/PREFIX or VZSTAGES_REMOTE"
            )
        remote = Remote(config, store)
    if args.action == "ls":
        lines = remote_manage.list_lines(remote) if on_remote else manage.list_lines(store)
        print("\n".join(lines))
        return 0
    if args.action == "gc":
        max_size, max_age = gc_limits(args)
        if on_remote:
            deleted = remote_manage.collect(remote, max_size, max_age, dry_run=args.dry_run)
        else:
            deleted = manage.collect(store, max_size, max_age, dry_run=args.dry_run)
        for line in deleted:
            print(("would delete " if args.dry_run else "deleted ") + line)
        print(f"{len(deleted)} entries {'to delete' if args.dry_run else 'deleted'}")
        return 0
    if args.action == "push":
        entries = remote_manage.local_entries(store, args.targets, args.cache)
        pushed = remote_manage.push(remote, entries)
        print(f"pushed {len(pushed)} of {len(entries)} entries ({human_size(remote.counters.sent)} sent)")
        return 0 if not remote.warnings else 1
    if args.action == "pull":
        if not args.targets:
            raise VzError("cache pull needs a key (STAGE-KEY or a key prefix) or a manifest")
        pulled = remote_manage.pull(remote, args.targets, args.cache)
        print(f"pulled {len(pulled)} entries ({human_size(remote.counters.received)} received)")
        return 0 if not remote.warnings else 1
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


def add_common(parser: argparse.ArgumentParser, default: object, url_optional: bool = False) -> None:
    """Options every command takes, before or after its name (`vzstages --cache D build M` and
    `vzstages build --cache D M`); `default` is SUPPRESS after the name, so it keeps the value
    given before it."""
    parser.add_argument("--cache", default="cache" if default is None else default, help=CACHE_HELP)
    remote = parser.add_argument_group("remote cache (per build host; also VZSTAGES_REMOTE...)")
    remote.add_argument(
        "--remote",
        default=default,
        nargs="?" if url_optional else None,
        const=CONFIGURED if url_optional else None,
        help="an S3 bucket as shared cache: s3://BUCKET/PREFIX (VZSTAGES_REMOTE)"
        + ("; ls and gc with --remote look after the remote" if url_optional else ""),
    )
    remote.add_argument(
        "--remote-mode",
        default=default,
        help="read (pull only), write (push only), readwrite (default) or off (VZSTAGES_REMOTE_MODE)",
    )
    remote.add_argument(
        "--remote-endpoint",
        default=default,
        help="endpoint URL of an S3-compatible store (VZSTAGES_REMOTE_ENDPOINT)",
    )
    remote.add_argument(
        "--remote-signing-key",
        default=default,
        help="OpenSSH ed25519 private key that signs what this host pushes (VZSTAGES_REMOTE_SIGNING_KEY)",
    )
    remote.add_argument(
        "--remote-trusted-keys",
        default=default,
        help="OpenSSH public keys, one a line: pull only what one of them signed "
        "(VZSTAGES_REMOTE_TRUSTED_KEYS)",
    )


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="vzstages", description=__doc__)
    top.add_argument("--version", action="version", version=f"vzstages {__version__}")
    add_common(top, None)
    common = Parser(add_help=False)
    add_common(common, argparse.SUPPRESS)
    sub = top.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("validate", parents=[common], help="check manifests (no root, no network)")
    p.add_argument("manifests", nargs="+")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "plan", parents=[common], help="show each stage: cached, in the remote, or run and why"
    )
    p.add_argument("manifests", nargs="+", metavar="manifest")
    p.add_argument("-v", "--verbose", action="store_true", help="list each stage's tasks")
    p.add_argument("--refresh", action="store_true", help=REFRESH_HELP)
    p.add_argument("--no-publish", action="store_true", help=NO_PUBLISH_HELP)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("build", parents=[common], help="build images (root)")
    p.add_argument(
        "targets",
        nargs="+",
        metavar="manifest|stage",
        help="manifests (or a matrix file listing them); with one manifest, stages to build up to",
    )
    p.add_argument("-n", "--jobs", type=int, default=1, help="build up to N independent stages at once")
    p.add_argument("-v", "--verbose", action="store_true", help="show every host command on the console")
    p.add_argument("--refresh", action="store_true", help=REFRESH_HELP)
    p.add_argument("--no-publish", action="store_true", help=NO_PUBLISH_HELP)
    p.add_argument(
        "--signing-key", help=f"OpenSSH ed25519 private key that signs the provenance ({SIGNING_KEY_ENV})"
    )
    p.set_defaults(func=cmd_build)

    cache_common = Parser(add_help=False)
    add_common(cache_common, argparse.SUPPRESS, url_optional=True)
    cache_help = "list, collect, verify, push or pull cache entries"
    p = sub.add_parser("cache", parents=[cache_common], help=cache_help)
    p.add_argument("action", choices=["ls", "gc", "verify", "push", "pull"])
    p.add_argument(
        "targets",
        nargs="*",
        metavar="target",
        help="push: manifests whose entries to push (default: every local entry); "
        "pull: STAGE-KEY, a key prefix, or manifests",
    )
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
    add_commands(sub)
    return top


class Parser(argparse.ArgumentParser):
    """argparse that names the nearest command when one is misspelt (`vzstages biuld`)."""

    def error(self, message: str) -> NoReturn:
        import difflib
        import re

        wrong = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if wrong:
            choices = re.findall(r"'([^']*)'", wrong[2])
            near = difflib.get_close_matches(wrong[1], choices, n=1)
            if near:
                message += f"; did you mean {near[0]!r}?"
        super().error(message)


def parse(argv: list[str] | None) -> argparse.Namespace:
    """argparse, except that `cache push --remote URL a.yml` works: a `*` positional (targets) is
    filled before the options after it are seen, so words left over after them are its too."""
    top = parser()
    args, extras = top.parse_known_args(argv)
    if extras and hasattr(args, "targets") and not any(e.startswith("-") for e in extras):
        args.targets = [*args.targets, *extras]
    elif extras:
        top.error(f"unrecognized arguments: {' '.join(extras)}")
    return args


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `vzstages plan M | head` is not an error
    try:
        args = parse(argv)
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
        bug = f"{type(exc).__name__}: {exc}"
        print(f"error: internal error ({bug}); VZSTAGES_DEBUG=1 shows where", file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
