"""One build session: manifest -> plan -> doit tasks, shared by dodo.py and `vzstages build`."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from doit.exceptions import TaskFailed

from .cache.archive_state import ArchiveState
from .cache.store import Store
from .compiler import doit_tasks
from .compiler.explain import explain
from .compiler.plan import CompiledStage, Plan, compile_plan
from .errors import CommandError, VzError
from .host import Host, require_build_host, require_tools
from .manifest import Manifest, load_manifest
from .model.view import ManifestView
from .runner import run_stage
from .volume.runs import reap

progress = logging.getLogger("vzstages.progress")
log = logging.getLogger("vzstages.build")
DOIT_PLUGINS = {
    "BACKEND": {"vzstages": "vzstages.compiler.doit_db:DurableSqliteDB"},
    "REPORTER": {"vzstages": "vzstages.compiler.doit_reporter:StageReporter"},
    "COMMAND": {"info": "vzstages.compiler.doit_info:StageInfo"},
}

BASE_TOOLS = [
    "qemu-img",
    "qemu-storage-daemon",
    "sfdisk",
    "losetup",
    "mount",
    "umount",
    "chroot",
    "debootstrap",
]


def setup_console_logging(verbose: bool = False) -> None:
    root = logging.getLogger("vzstages")
    if any(getattr(h, "_vzstages_console", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    handler.addFilter(lambda r: verbose or r.name == "vzstages.progress" or r.levelno >= logging.WARNING)
    handler._vzstages_console = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class RedactSecrets(logging.Filter):
    """Secrets never reach a log line or the console, whatever printed them."""

    def __init__(self, manifest: Manifest):
        super().__init__()
        self.manifest = manifest

    def filter(self, record: logging.LogRecord) -> bool:
        if self.manifest.secret_values:
            record.msg = self.manifest.redact(record.getMessage())
            record.args = ()
        return True


@dataclass
class Build:
    plan: Plan
    host: Host = field(default_factory=Host)
    log_file: Path | None = None
    up_to: Sequence[str] = ()  # `vzstages build M STAGE...`: only these stages and their parents
    _prepared: bool = False

    @property
    def doit_config(self) -> dict[str, Any]:
        return doit_tasks.doit_config(self.plan.store.root)

    def required_tools(self) -> list[str]:
        layout = self.plan.manifest.layout
        tools = set(BASE_TOOLS)
        tools |= {
            "mkswap" if p.filesystem == "swap" else f"mkfs.{p.filesystem}"
            for p in layout.partitions
            if p.filesystem
        }
        if layout.get("efi"):
            tools |= {"mmd", "mcopy"}  # grub's EFI binary goes onto the unmounted ESP with mtools
        return sorted(tools)

    def prepare(self) -> None:
        """Before the first stage runs: check the host, open the log, clean up after dead runs."""
        if self._prepared:
            return
        self.check()
        redact = RedactSecrets(self.plan.manifest)
        for handler in logging.getLogger("vzstages").handlers:
            handler.addFilter(redact)
        # SIGTERM unwinds like Ctrl-C: mounts, loops and daemons are released on the way out.
        signal.signal(signal.SIGTERM, _raise_interrupt)
        workspace = self.plan.manifest.workspace
        (workspace / "logs").mkdir(parents=True, exist_ok=True)
        self.log_file = (
            workspace
            / "logs"
            / f"{self.plan.manifest.path.stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        )
        handler = logging.FileHandler(self.log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handler.addFilter(redact)
        logging.getLogger("vzstages").addHandler(handler)
        logging.getLogger("vzstages").setLevel(logging.DEBUG)
        progress.info("building %s (log: %s)", self.plan.manifest.image_name, self.log_file)
        store = self.plan.store
        store.ensure()
        for line in reap(self.host, store.runs, store.stages):
            progress.info("cleaned up after a dead build: %s", line)
        # gc leaves alone what this build reads or writes, for as long as it runs.
        store.hold([(s.name, s.key) for s in self.plan.stages])
        self._prepared = True

    def check(self) -> None:
        """Everything a build needs before its first stage runs: root, the host tools, and each
        running task's own checks of the outside world (publishing credentials, say), for the
        stages that will run (all, or those `up_to` names and their parents)."""
        require_build_host()
        require_tools(self.required_tools())
        self.plan.store.check_usable()
        stages = self.plan.stages
        if self.up_to:
            stages = stages[: 1 + max(i for i, s in enumerate(stages) if s.name in self.up_to)]
        for status in explain(self.plan):
            if status.hit or status.stage not in stages:
                continue
            for task in status.stage.tasks:
                task.preflight(ManifestView(self.plan.manifest, task.name(), task.reads))

    def run_stage(self, stage: CompiledStage) -> dict[str, bool] | TaskFailed:
        """doit's action for a stage. A failure is one line with its cause and the log's path;
        the traceback goes to the log only."""
        try:
            self.prepare()
            _, cached = run_stage(self.plan, stage, self.host)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            log.debug("stage %s failed", stage.name, exc_info=True)  # the log file, not the console
            where = f"\n  full log: {self.log_file}" if self.log_file else ""
            return TaskFailed(f"{stage.name} failed: {failure_summary(exc)}{where}")
        return {"cached": cached}

    def tasks(self) -> Iterator[dict[str, Any]]:
        return doit_tasks.doit_tasks(self.plan, self.run_stage)


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


def load_plan(
    manifest: str | Path, cache_dir: str | Path = "cache", refresh: bool = False, publish: bool = True
) -> Plan:
    """Load, validate and compile, with the archive's state for the stages that download."""
    setup_console_logging()
    loaded = load_manifest(find_manifest(manifest))
    for warning in loaded.warnings:
        progress.warning("warning: %s", warning)
    store = Store(Path(cache_dir).resolve())
    store.check_usable()
    archive = ArchiveState(store.root / "archive", refresh=refresh)
    return compile_plan(loaded, store, archive.suites, publish=publish)


def load_build(
    manifest: str | Path, cache_dir: str | Path = "cache", refresh: bool = False, publish: bool = True
) -> Build:
    return Build(load_plan(manifest, cache_dir, refresh, publish))


def report_and_exit(error: VzError) -> None:
    print(f"error: {error}", file=sys.stderr)
    raise SystemExit(2)
