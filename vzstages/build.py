"""One build session: manifests -> plans -> one doit task graph, shared by dodo.py and
`vzstages build`. Several manifests compile into one graph: a stage two of them share (same key)
is one task, built once, and doit's parallel runner (`-n N`) builds independent stages side by side.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from doit.exceptions import TaskFailed

from . import console
from .bounded import read_regular
from .cache.archive_state import ArchiveState
from .cache.remote import Remote
from .cache.remote_config import RemoteConfig
from .cache.store import Store, cache_folder
from .common.partitions import format_tools
from .compiler import code, doit_tasks
from .compiler.explain import explain
from .compiler.plan import CompiledStage, Plan, compile_plan
from .errors import ArchiveMoved, CommandError, ManifestError, VzError
from .host import UMASK, Host, require_build_host, require_tools
from .manifest import Manifest, load_manifest
from .model.view import ManifestView
from .runner import run_stage
from .volume import fsck
from .volume.runs import reap

progress = logging.getLogger("vzstages.progress")
log = logging.getLogger("vzstages.build")
DOIT_PLUGINS = {
    "BACKEND": {"vzstages": "vzstages.compiler.doit_db:DurableSqliteDB"},
    "REPORTER": {"vzstages": "vzstages.compiler.doit_reporter:StageReporter"},
    "COMMAND": {
        "info": "vzstages.compiler.doit_info:StageInfo",
        "dumpdb": "vzstages.compiler.doit_info:DumpDB",
        "strace": "vzstages.compiler.doit_info:NoStrace",
    },
}

BASE_TOOLS = [
    "qemu-img",
    "qemu-storage-daemon",
    "sfdisk",
    "losetup",
    "mount",
    "umount",
    "chroot",
    "mmdebstrap",
]


def setup_console_logging(verbose: bool = False) -> None:
    console.setup(verbose)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class RedactSecrets(logging.Filter):
    """Secrets never reach a log line or the console, whatever printed them."""

    def __init__(self, manifests: Sequence[Manifest]):
        super().__init__()
        self.secrets = frozenset(v for m in manifests for v in m.secret_values)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            for secret in sorted(self.secrets, key=len, reverse=True):
                message = message.replace(secret, "***")
            record.msg, record.args = message, ()
        return True


@dataclass
class Build:
    plans: list[Plan]
    remote: Remote | None = None  # a shared cache to pull stages from and push them to
    host: Host = field(default_factory=Host)
    log_file: Path | None = None
    up_to: Sequence[str] = ()  # `vzstages build M STAGE...`: only these stages and their parents
    _prepared: bool = False
    _pushes: list[Future[bool]] = field(default_factory=list)
    _pusher: ThreadPoolExecutor | None = None
    _summarised: bool = False
    archive_moved: bool = False  # a stage found the archive no longer in the state its key names

    @property
    def plan(self) -> Plan:
        """The plan, when the build has one manifest."""
        return self.plans[0]

    @property
    def store(self) -> Store:
        return self.plans[0].store

    @property
    def doit_config(self) -> dict[str, Any]:
        # What `doit` and `doit forget` with no task name mean: the whole build.
        names = (
            [s.name for s in self.plan.stages] if len(self.plans) == 1 else doit_tasks.plan_labels(self.plans)
        )
        return {**doit_tasks.doit_config(self.store.root), "default_tasks": names}

    def required_tools(self) -> list[str]:
        tools = set(BASE_TOOLS)
        for plan in self.plans:
            layout = plan.manifest.layout
            tools |= format_tools(layout) | fsck.tools_for(layout)
            if layout.get("efi"):
                tools |= {"mmd", "mcopy"}  # grub's EFI binary goes onto the unmounted ESP with mtools
        return sorted(tools)

    def prepare(self) -> None:
        """Before the first stage runs: check the host, open the log, clean up after dead runs."""
        if self._prepared:
            return
        self.check()
        # Files vzstages itself writes into the image get the same modes whatever the caller's umask.
        os.umask(UMASK)
        redact = RedactSecrets([p.manifest for p in self.plans])
        for handler in logging.getLogger("vzstages").handlers:
            handler.addFilter(redact)
        if threading.current_thread() is threading.main_thread():
            # SIGTERM unwinds like Ctrl-C: mounts, loops and daemons are released on the way out.
            signal.signal(signal.SIGTERM, _raise_interrupt)
            # A console that goes away (the CI runner's log pipe, `| tee` killed) must not kill
            # the build halfway through its cleanup: a write to it fails, and the log file goes on.
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        first = self.plans[0].manifest
        (first.workspace / "logs").mkdir(parents=True, exist_ok=True)
        name = first.path.stem if len(self.plans) == 1 else "build"
        self.log_file = (
            first.workspace / "logs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        )
        handler = logging.FileHandler(self.log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handler.addFilter(redact)
        logging.getLogger("vzstages").addHandler(handler)
        logging.getLogger("vzstages").setLevel(logging.DEBUG)
        images = ", ".join(p.manifest.image_name for p in self.plans)
        progress.info("building %s (log: %s)", images, self.log_file)
        store = self.store
        store.ensure()
        # A first build had no cache folder to keep its code fingerprints in when it planned:
        # kept now, the next run (a no-op, say) need not work them out again.
        code.save_memo(store.root / CODE_MEMO)
        for line in reap(self.host, store.runs, store.stages):
            progress.info("cleaned up after a dead build: %s", line)
        # gc leaves alone what this build reads or writes, for as long as it runs.
        store.hold(sorted({(s.name, s.key) for p in self.plans for s in p.stages}))
        atexit.register(self.finish)
        self._prepared = True

    def check(self) -> None:
        """Everything a build needs before its first stage runs: root, the host tools, and each
        running task's own checks of the outside world (publishing credentials, say), for the
        stages that will run (all, or those `up_to` names and their parents)."""
        require_build_host()
        require_tools(self.required_tools())
        self.store.check_usable()
        for plan in self.plans:
            stages = self.stages_to_run(plan)
            for status in explain(plan, self.remote):
                if not status.runs or status.stage not in stages:
                    continue
                for task in status.stage.tasks:
                    task.preflight(ManifestView(plan.manifest, task.name(), task.reads))

    def stages_to_run(self, plan: Plan) -> list[CompiledStage]:
        """All the plan's stages, or those `up_to` names and their parents."""
        if not self.up_to:
            return plan.stages
        wanted = [i for i, s in enumerate(plan.stages) if s.name in self.up_to]
        return plan.stages[: 1 + max(wanted)] if wanted else []

    def run_stage(self, plan: Plan, stage: CompiledStage, display: str = "") -> dict[str, Any] | TaskFailed:
        """doit's action for a stage. A failure is one line with its cause and the log's path;
        the traceback goes to the log only."""
        received = self.remote.counters.received if self.remote else 0
        started = time.monotonic()
        try:
            self.prepare()
            will_run = {s.name for s in self.stages_to_run(plan)}
            ahead = [(s.name, s.key) for s in plan.stacked_on(stage) if s.name in will_run]
            record, status = run_stage(plan, stage, self.host, display or stage.name, self.remote, ahead)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            self.archive_moved = self.archive_moved or isinstance(exc, ArchiveMoved)
            log.debug("stage %s failed", stage.name, exc_info=True)  # the log file, not the console
            where = f"\n  full log: {self.log_file}" if self.log_file else ""
            return TaskFailed(f"{display or stage.name} failed: {failure_summary(exc)}{where}")
        if status == "built" and stage.disk:
            self.push(stage)
        pulled = (self.remote.counters.received - received) if self.remote else 0
        return {
            "status": status,
            "seconds": round(time.monotonic() - started, 1),
            "saved": record.timings.get("total", 0.0) if status != "built" else 0.0,
            "pulled_bytes": pulled,
        }

    def push(self, stage: CompiledStage) -> None:
        """Push a built stage to the remote cache, in the background while the next stage runs."""
        remote = self.remote
        if remote is None or not remote.config.can_write:
            return
        if self._pusher is None:
            self._pusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vzstages-push")
        self._pushes.append(self._pusher.submit(remote.push, stage.name, stage.key))

    def finish(self) -> None:
        """Wait for the pushes still going, then say what crossed the network."""
        if self._pusher is not None:
            if self._pushes and not all(f.done() for f in self._pushes):
                progress.info("waiting for pushes to the remote cache to finish")
            self._pusher.shutdown(wait=True)
            self._pusher = None
        counters = self.remote.counters if self.remote is not None else None
        if counters is not None and (counters.pulled or counters.pushed) and not self._summarised:
            self._summarised = True  # finish runs at the end of the command and again at exit
            progress.info("%s", counters.summary())

    def tasks(self) -> Iterator[dict[str, Any]]:
        return doit_tasks.doit_tasks(self.plans, self.run_stage, self.remote)


def failure_summary(exc: BaseException) -> str:
    """What went wrong, in a few lines: the command and the end of its output, or the error."""
    if isinstance(exc, CommandError):
        tail = [line for line in exc.output.strip().splitlines() if line.strip()][-3:]
        shown = " ".join(exc.argv[:6]) + (" ..." if len(exc.argv) > 6 else "")
        return f"`{shown}` exited {exc.returncode}" + "".join(f"\n    {line}" for line in tail)
    if isinstance(exc, VzError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def parse_bool(name: str, value: str) -> bool:
    """A doit variable's truth, as people write it (publish=false, refresh=yes)."""
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on", "y"):
        return True
    if text in ("", "0", "false", "no", "off", "n"):
        return False
    raise VzError(f"{name}={value!r}: say true or false (yes/no, on/off, 1/0)")


def find_manifest(name: str | Path) -> Path:
    """The manifest a user means: the path given, else the example of that name in manifests/
    (`doit manifest=ec2.yml`, `vzstages build kvm.yml`)."""
    path = Path(name)
    if path.exists() or path.parent != Path("."):
        return path
    for folder in (Path("manifests"), Path(__file__).resolve().parent.parent / "manifests"):
        for candidate in (folder / path.name, folder / f"{path.name}.yml"):
            if candidate.is_file():
                return candidate
    return path


def expand_manifests(names: Sequence[str | Path]) -> list[Path]:
    """Manifest arguments as paths: comma-separated lists (`doit manifest=a.yml,b.yml`) and
    matrix files (a YAML mapping with `manifests:`, a list of paths relative to it) expanded."""
    found: list[Path] = []
    for name in names:
        for part in str(name).split(","):
            if not part.strip():
                continue
            path = find_manifest(part.strip())
            matrix = _matrix(path)
            found += matrix if matrix is not None else [path]
    if not found:
        raise VzError("no manifest given")
    return found


def _matrix(path: Path) -> list[Path] | None:
    try:
        data = yaml.safe_load(read_regular(path, 1 << 20))
    except (OSError, yaml.YAMLError, ValueError):
        return None  # not a matrix; loading it as a manifest reports what is wrong
    if not (isinstance(data, dict) and set(data) == {"manifests"}):
        return None
    entries = data["manifests"]
    if not isinstance(entries, list) or not entries or not all(isinstance(e, str) for e in entries):
        raise ManifestError(str(path), [f"{path}: manifests: expected a list of manifest paths"])
    return [path.parent / e for e in entries]


CODE_MEMO = "code-memo.json"  # what parsing vzstages' modules found (compiler/code.py)


def load_plans(
    manifests: Sequence[str | Path],
    cache_dir: str | Path = "cache",
    refresh: bool = False,
    publish: bool = True,
    remote: RemoteConfig | None = None,
) -> list[Plan]:
    return load_session(manifests, cache_dir, refresh, publish, remote)[0]


def load_session(
    manifests: Sequence[str | Path],
    cache_dir: str | Path = "cache",
    refresh: bool = False,
    publish: bool = True,
    remote: RemoteConfig | None = None,
) -> tuple[list[Plan], Remote | None]:
    """Load, validate and compile each manifest, with the archive's state for the stages that
    download; all plans share one store. The remote, if any, is returned beside the plans: a
    plan is data, the remote a service the build, plan and explain calls are handed."""
    setup_console_logging()
    store = Store(cache_folder(cache_dir))
    store.check_usable()
    shared = Remote(remote, store) if remote else None
    archive = ArchiveState(store.root / "archive", refresh=refresh, shared=shared)
    code.load_memo(store.root / CODE_MEMO)
    plans = []
    for path in expand_manifests(manifests):
        loaded = load_manifest(path)
        for warning in loaded.warnings:
            progress.warning("warning: %s", warning)
        plans.append(compile_plan(loaded, store, archive.suites, publish=publish))
    check_one_output_one_manifest(plans)
    if store.root.is_dir():
        code.save_memo(store.root / CODE_MEMO)
    return plans, shared


def check_one_output_one_manifest(plans: Sequence[Plan]) -> None:
    """Two manifests that would write one file (an image name shared by a copy with another
    hostname) are refused before any stage runs: one would silently overwrite the other."""
    writers: dict[Path, tuple[str, Plan]] = {}
    for plan in plans:
        for stage in plan.stages:
            for output in stage.outputs:
                earlier = writers.setdefault(output, (stage.key, plan))
                if earlier[0] != stage.key:
                    raise VzError(
                        f"{earlier[1].manifest.path} and {plan.manifest.path} would both write {output}: "
                        "give one of them another name (or bootstrapper.workspace)"
                    )


def load_plan(
    manifest: str | Path,
    cache_dir: str | Path = "cache",
    refresh: bool = False,
    publish: bool = True,
    remote: RemoteConfig | None = None,
) -> Plan:
    [plan] = load_plans([manifest], cache_dir, refresh, publish, remote)
    return plan


def load_build(
    manifests: str | Path | Sequence[str | Path],
    cache_dir: str | Path = "cache",
    refresh: bool = False,
    publish: bool = True,
    remote: RemoteConfig | None = None,
) -> Build:
    names = [manifests] if isinstance(manifests, str | Path) else list(manifests)
    plans, shared = load_session(names, cache_dir, refresh, publish, remote)
    return Build(plans, shared)


def report_and_exit(error: VzError) -> None:
    if isinstance(error, ManifestError):
        print("error: invalid manifest\n" + "\n".join(f"  {p}" for p in error.problems), file=sys.stderr)
    else:
        print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2)
