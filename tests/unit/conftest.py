from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from vzstages.compiler import code


@pytest.fixture
def edit_source(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Stand in an edited source for a vzstages module (as if someone changed a line of it)."""
    edited: set[str] = set()
    real = code.module_source.__wrapped__

    def source(name: str) -> bytes:
        return real(name) + (b"\n# edited\n" if name in edited else b"")

    def edit(module: str) -> None:
        assert code.module_file(module) is not None, module
        edited.add(module)
        code.clear_caches()

    code.clear_caches()
    monkeypatch.setattr(code, "module_source", source)
    yield edit
    monkeypatch.undo()
    code.clear_caches()
