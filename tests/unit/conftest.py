from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from vzstages.compiler import code
from vzstages.host import Host, Result
from vzstages.manifest import Manifest, load_manifest
from vzstages.model.info import BuildInfo
from vzstages.model.task import Task
from vzstages.model.view import ManifestView
from vzstages.volume.disk import Tree

from ..conftest import KVM_MANIFEST


@pytest.fixture(autouse=True)
def signal_handlers_restored() -> Iterator[None]:
    """The CLI's main() sets process-wide handlers (SIGPIPE to its default, so that
    `vzstages plan M | head` is not an error); a test that calls it in this process must not leave
    them to the next, whose write to a closed socket would then kill the whole test run."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGPIPE, signal.SIGTERM, signal.SIGINT)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


@pytest.fixture
def edit_source(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Stand in an edited source for a vzstages module (as if someone changed a line of it)."""
    edited: set[str] = set()
    real = code.module_source.__wrapped__

    def source(name: str) -> bytes:
        # A change of behaviour (a comment or a docstring would not change any key).
        return real(name) + (b"\n_EDITED = True\n" if name in edited else b"")

    def edit(module: str) -> None:
        assert code.module_file(module) is not None, module
        edited.add(module)
        code.clear_caches()

    code.clear_caches()
    monkeypatch.setattr(code, "module_source", source)
    yield edit
    monkeypatch.undo()
    code.clear_caches()


class RecordingHost(Host):
    """Runs nothing: records each command (chroot commands as the argv inside the chroot)."""

    def __init__(self, outputs: dict[str, str] | None = None) -> None:
        self.commands: list[list[str]] = []
        self.inputs: list[str | None] = []
        self.outputs = outputs or {}  # first argument -> what the command prints

    def run(self, argv, *, input=None, env=None, check=True, secret_input=False):  # type: ignore[override]
        self.commands.append(list(argv))
        self.inputs.append(input)
        return Result(list(argv), 0, self.outputs.get(argv[0], ""))

    def chroot(self, root, argv, **kwargs):  # type: ignore[override]
        return self.run(list(argv), **kwargs)


@dataclass
class FakeStage:
    """A task's world without root: a folder as the mounted image, a recording host."""

    manifest: Manifest
    info: BuildInfo
    host: RecordingHost
    root: Path

    def run(self, task: type[Task]) -> None:
        task.run(replace(self.info, manifest=ManifestView(self.manifest, task.name(), task.reads)))


@pytest.fixture
def fake_stage(tmp_path: Path, write_manifest) -> Callable[..., FakeStage]:
    def make(text: str = KVM_MANIFEST, stage: str = "system", facts: dict | None = None) -> FakeStage:
        manifest = load_manifest(write_manifest(text, name="fake.yml"))
        host = RecordingHost()
        root = tmp_path / "root"
        for folder in ("etc/apt/apt.conf.d", "etc/apt/sources.list.d", "tmp", "var/log", "boot"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        info = BuildInfo(
            manifest=ManifestView(manifest, "<stage>", ()),
            stage=stage,
            key="0" * 32,
            host=host,
            layout=manifest.layout,
            workspace=tmp_path / "build",
            package_cache=tmp_path / "debs",
            runs=tmp_path / "runs",
            image_name=manifest.image_name,
            facts=dict(facts or {}),
        )
        info.tree = Tree(host, root, contextlib.ExitStack(), bound=True)
        return FakeStage(manifest, info, host, root)

    return make
