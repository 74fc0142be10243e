"""What code a stage's result depends on: the vzstages modules a task can run.

A task's code is its own module and every vzstages module that module imports, transitively
(imports inside functions included; imports under `if TYPE_CHECKING:` excluded, since they never
run). A package that is imported explicitly (`from ..common import apt` imports `common` too) is
followed like any module. A parent package that Python only runs on the way to a submodule is
hashed for its own text, but its imports are not followed: the submodule cannot reach what only
its parent imported. So keep provider and plugin __init__ files to `resolve_tasks` and
`validate`, and their tasks in modules of their own, and an edit to one task does not touch the
keys of stages whose tasks cannot run it.

The objects a task is handed (the mounted tree, the host layer, the manifest view) run code of
their own: that is the stage runtime (RUNTIME_ROOTS), whose closure enters every stage's key.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import xxhash

PACKAGE = "vzstages"
PACKAGE_DIR = Path(__file__).resolve().parent.parent

# The modules that run a stage around its tasks (export, loops, mounts, chroot, DNS, rollback), and
# the manifest, whose methods a task calls through its view (lookups, templates, the layout).
RUNTIME_ROOTS = ("vzstages.runtime", "vzstages.manifest")


def module_file(name: str) -> Path | None:
    """The source file of a vzstages module or package, or None if there is none."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    parts = name.split(".")[1:]
    base = PACKAGE_DIR.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_package(name: str) -> bool:
    file = module_file(name)
    return file is not None and file.name == "__init__.py"


@cache
def module_source(name: str) -> bytes:
    file = module_file(name)
    return file.read_bytes() if file else b""


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            yield from (n for child in node.orelse for n in _import_nodes_of(child))
            continue
        yield from _import_nodes_of(node)


def _import_nodes_of(node: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    else:
        yield from _import_nodes(node)


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    # A relative import counts from the module's package (the module itself if it is a package).
    package = module if _is_package(module) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


@cache
def imports(name: str) -> frozenset[str]:
    """The vzstages modules `name` imports explicitly (at any depth of its code)."""
    found: set[str] = set()
    for node in _import_nodes(ast.parse(module_source(name))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = _absolute(name, node)
            # `from pkg import x` imports pkg, and pkg.x when x is a module of its own.
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        found |= {t for t in targets if module_file(t) is not None}
    return frozenset(found)


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(roots: Iterable[str]) -> tuple[str, ...]:
    """Every module the roots can run: followed imports, plus the parent packages Python runs
    on the way to each (their own text only)."""
    followed: set[str] = set()
    pending = [r for r in roots if module_file(r) is not None]
    while pending:
        name = pending.pop()
        if name in followed:
            continue
        followed.add(name)
        pending += imports(name) - followed
    parents = {p for name in followed for p in _parents(name) if module_file(p) is not None}
    return tuple(sorted(followed | parents))


def code_digest(modules: Iterable[str]) -> str:
    """One digest over the modules' names and sources (never their paths on this machine)."""
    h = xxhash.xxh3_128()
    for name in sorted(modules):
        h.update(f"{name}\0{xxhash.xxh3_128_hexdigest(module_source(name))}\n".encode())
    return h.hexdigest()


@cache
def runtime_fingerprint() -> str:
    return code_digest(closure(RUNTIME_ROOTS))


_CACHED = (module_source, imports, runtime_fingerprint)


def clear_caches() -> None:
    """For tests that stand in an edited source."""
    for cached in _CACHED:
        cached.cache_clear()
