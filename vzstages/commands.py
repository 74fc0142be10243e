"""What each `vzstages` command does (cli.py parses the command line and calls one of these)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from doit.cmd_base import TaskLoader2
from doit.doit_cmd import DoitMain
from doit.loader import generate_tasks

from . import events
from .build import (
    DOIT_PLUGINS,
    Build,
    expand_manifests,
    load_build,
    load_session,
    setup_console_logging,
)
from .cache.record import STAGE_NAMES
from .cache.remote import Remote
from .cache.remote_config import RemoteConfig, remote_config
from .cache.signing import load_signing_key
from .cache.store import Store, cache_folder
from .compiler.explain import explain
from .compiler.plan import Plan, compile_plan
from .errors import ManifestError, VzError
from .evidence.writer import SIGNING_KEY_ENV
from .manifest import load_manifest
from .results import made_from, result_path
from .runner import last_duration
from .shell_on_error import SHELL_ON_ERROR_ENV
from .units import human_size, parse_age, parse_size

progress = logging.getLogger("vzstages.progress")


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
    plans, remote = load_session(
        args.manifests, args.cache, refresh=args.refresh, publish=not args.no_publish, remote=remote_of(args)
    )
    for plan in plans:
        manifest = plan.manifest
        print(f"{manifest.path}: {manifest.image_name} ({manifest.provider})")
        expected: list[float | None] = []
        for status in explain(plan, remote):
            stage = status.stage
            about = ""
            if status.label == "run":
                expected.append(last_duration(plan.store, stage.name))
                last = expected[-1]
                about = f", about {seconds(last)}" if last is not None else ", never built in this cache"
            print(f"  {stage.name:<9}{status.label:<7}{stage.key[:16]}  {len(stage.tasks)} tasks{about}")
            for reason in status.reasons:
                print(f"{'':20}{reason}")
            if args.verbose:
                for task in stage.tasks:
                    print(f"{'':20}. {task.name()}")
        print(f"  {expectation(expected)}")
    return 0


def expectation(expected: list[float | None]) -> str:
    """The plan's total, from each stage's last build in this cache (any key)."""
    if not expected:
        return "nothing to build: every stage is cached"
    known = [e for e in expected if e is not None]
    total = f"{len(expected)} stages to build"
    if len(known) == len(expected):
        return f"{total}, about {seconds(sum(known))}"
    if not known:
        return f"{total}, none built in this cache before (no estimate)"
    unknown = len(expected) - len(known)
    return f"{total}: about {seconds(sum(known))} for {len(known)}, {unknown} never built here"


def seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 10 else f"{value:.0f}s"


def split_targets(targets: list[str]) -> tuple[list[str], list[str]]:
    """`vzstages build a.yml b.yml` and `vzstages build a.yml image`: manifests, then stages."""
    manifests = [t for t in targets if t not in STAGE_NAMES or Path(t).exists()]
    stages = [t for t in targets if t not in manifests]
    if not manifests:
        raise VzError("which manifest? (vzstages build MANIFEST [MANIFEST...] [STAGE...])")
    return manifests, stages


def cmd_build(args: argparse.Namespace) -> int:
    if args.json:
        events.setup()
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
    for plan in build.plans if not args.force else []:
        refuse_to_overwrite(plan)
    use_signing_key(args.signing_key or os.environ.get(SIGNING_KEY_ENV))
    if args.shell_on_error:
        os.environ[SHELL_ON_ERROR_ENV] = "1"  # read where a stage fails (runtime.py)
    if args.verbose:
        setup_console_logging(verbose=True)
    build.prepare()  # a clear error now rather than from inside the first stage
    doit_args = ["run", *stages]
    if args.jobs > 1:
        doit_args += ["-n", str(args.jobs)]
    try:
        status = int(DoitMain(PlanLoader(build), extra_config=DOIT_PLUGINS).run(doit_args))
    finally:
        build.finish()
    if status != 0 and build.archive_moved and not args.refresh:
        plan_again_with_the_archive_now()
    return status


def plan_again_with_the_archive_now() -> NoReturn:
    """A suite moved while the build ran: what was built under the state the keys name is kept,
    and the same command runs again (once) with --refresh, so every key names the archive as it is."""
    progress.warning("the archive moved while this build ran: planning again with its state now (--refresh)")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "vzstages", *sys.argv[1:], "--refresh"])


def refuse_to_overwrite(plan: Plan) -> None:
    """An image made from another manifest (a copy with another hostname, say) is not silently
    replaced: the build says so before any stage runs, and --force replaces it."""
    image = next((s for s in plan.stages if s.name == "image"), None)
    if image is None or not any(p.exists() for p in image.outputs):
        return
    maker = made_from(result_path(plan.manifest.workspace, plan.manifest.image_name))
    if maker is not None and maker[0] != str(plan.manifest.path) and maker[1] != image.key:
        raise VzError(
            f"{image.outputs[0]} was made from {maker[0]}; building {plan.manifest.path} would replace it "
            "with another image: --force replaces it, or give this one another name "
            "(or bootstrapper.workspace)"
        )


def use_signing_key(path: str | None) -> None:
    """Checked now (a clear error before any stage runs); the reporter signs with it."""
    if path:
        load_signing_key(Path(path))
        os.environ[SIGNING_KEY_ENV] = str(Path(path).resolve())


def cmd_boot(args: argparse.Namespace) -> int:
    from .boottest import attach, boot

    hostname, architecture, firmware = args.hostname, args.arch, args.firmware
    if args.manifest:
        manifest = load_manifest(args.manifest)
        hostname = hostname or manifest.get("system.hostname", "debian")
        architecture = architecture or manifest.get("system.architecture")
        firmware = firmware or manifest.firmware
    if args.interactive:
        return attach(
            Path(args.image),
            disk_interface=args.disk,
            snapshot=not args.persist,
            architecture=architecture or "amd64",
            firmware=firmware or "bios",
        )
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
                f"cache {args.action} needs a remote: --remote s3://BUCKET/PREFIX (or /SHARED/FOLDER) "
                "or VZSTAGES_REMOTE"
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
