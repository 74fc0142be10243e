"""What code a stage's result depends on: the vzstages modules a task can run, by behaviour.

A task's code is its own module and every vzstages module that module imports, transitively
(imports inside functions included; imports under `if TYPE_CHECKING:` excluded, since they never
run). `from pkg import name` follows `pkg.name` when that is a module of its own, else `pkg`
(the name is defined there). A package's `__init__` that Python only runs on the way to a
submodule is not part of the code: package inits hold what resolves and validates components
(`resolve_tasks`, `validate`, schemas), which decides what a stage does through the task list
and the declared values (both in the key), and must never change what a module does.

A module enters a key as its syntax tree with docstrings dropped (`ast.dump` without
positions): a comment, a docstring, a blank line or a reformatting leaves every key as it was;
any change to what the code does changes the keys of the stages whose tasks can run it.

The objects a task is handed (the mounted tree, the host layer, the manifest view) run code of
their own: that is the stage runtime (RUNTIME_ROOTS), whose closure enters every stage's key.
Loading and validating manifests, the CLI, the cache and its management, planning and
reporting are outside it: they decide whether and when a stage runs, never what it holds.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import xxhash

from ..bounded import read_regular

PACKAGE = "vzstages"
PACKAGE_DIR = Path(__file__).resolve().parent.parent

# The modules that run a stage around its tasks (export, loops, mounts, chroot, DNS, rollback), and
# the manifest, whose methods a task calls through its view (lookups, templates, the layout).
RUNTIME_ROOTS = ("vzstages.runtime", "vzstages.manifest.model")


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


_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _drop_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if not isinstance(node, _DOCUMENTED) or not node.body:
            continue
        first = node.body[0]
        value = first.value if isinstance(first, ast.Expr) else None
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            node.body = node.body[1:] or [ast.Pass()]
    return tree


@cache
def module_tree(name: str) -> ast.Module:
    """The module's syntax tree, docstrings dropped (parsed once: imports and behaviour share it)."""
    tree = _drop_docstrings(ast.parse(module_source(name)))
    assert isinstance(tree, ast.Module)
    return tree


@cache
def module_behaviour(name: str) -> str:
    """A digest of what a module does: its syntax tree without docstrings or positions."""
    known = _memo.get(_memo_key(name))
    if known is not None and known[0] is not None:
        return str(known[0])
    behaviour = xxhash.xxh3_128_hexdigest(ast.dump(module_tree(name), include_attributes=False).encode())
    _remember(name, behaviour=behaviour)
    return behaviour


# Parsing every module a plan runs costs more than the rest of a no-op build. What parsing finds
# follows from the module's exact source, the Python that parsed it and this file's rules, so it
# is remembered under a key made of all three (the cache folder's code-memo.json): a module
# edited, another Python or a change here is a new key, never a stale answer.
MEMO_BYTES = 4 << 20
_memo: dict[str, list[Any]] = {}
_memo_changed = False


@cache
def _rules() -> str:
    return xxhash.xxh3_64_hexdigest(Path(__file__).read_bytes())


def _memo_key(name: str) -> str:
    source = hashlib.sha256(module_source(name)).hexdigest()
    return f"{name}:{source}:{'.'.join(map(str, sys.version_info[:3]))}:{_rules()}"


def _remember(name: str, *, behaviour: str | None = None, found: frozenset[str] | None = None) -> None:
    global _memo_changed
    entry = _memo.setdefault(_memo_key(name), [None, None])
    if behaviour is not None:
        entry[0] = behaviour
    if found is not None:
        entry[1] = sorted(found)
    _memo_changed = True


def load_memo(path: Path) -> None:
    """What earlier runs found (a damaged or foreign file is ignored: it is only a speed-up)."""
    from ..cache.record import load_json

    try:
        data = load_json(read_regular(path, MEMO_BYTES))
    except (OSError, ValueError):
        return
    for key, entry in data.items() if isinstance(data, dict) else []:
        if (
            isinstance(key, str)
            and isinstance(entry, list)
            and len(entry) == 2
            and (entry[0] is None or isinstance(entry[0], str))
            and (
                entry[1] is None or (isinstance(entry[1], list) and all(isinstance(m, str) for m in entry[1]))
            )
        ):
            _memo.setdefault(key, entry)


def save_memo(path: Path) -> None:
    global _memo_changed
    if not _memo_changed:
        return
    from ..atomic import write_atomic

    with contextlib.suppress(OSError):
        write_atomic(path, json.dumps(_memo, sort_keys=True))
        _memo_changed = False


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
    known = _memo.get(_memo_key(name))
    if known is not None and known[1] is not None:
        return frozenset(known[1])
    found = _imports(name)
    _remember(name, found=found)
    return found


def _imports(name: str) -> frozenset[str]:
    found: set[str] = set()
    for node in _import_nodes(module_tree(name)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = _absolute(name, node)
            # `from pkg import x`: the module pkg.x if there is one, else x is a name in pkg.
            modules = [f"{base}.{alias.name}" for alias in node.names]
            targets = [m for m in modules if module_file(m) is not None]
            if len(targets) < len(modules):
                targets.append(base)
        found |= {t for t in targets if module_file(t) is not None}
    return frozenset(found)


def closure(roots: Iterable[str]) -> tuple[str, ...]:
    """Every module the roots can run: their imports, followed."""
    followed: set[str] = set()
    pending = [r for r in roots if module_file(r) is not None]
    while pending:
        name = pending.pop()
        if name in followed:
            continue
        followed.add(name)
        pending += imports(name) - followed
    return tuple(sorted(followed))


def code_digest(modules: Iterable[str]) -> str:
    """One digest over the modules' names and behaviour (never their paths on this machine)."""
    h = xxhash.xxh3_128()
    for name in sorted(modules):
        h.update(f"{name}\0{module_behaviour(name)}\n".encode())
    return h.hexdigest()


@cache
def runtime_fingerprint() -> str:
    return code_digest(closure(RUNTIME_ROOTS))


_CACHED = (module_source, module_tree, module_behaviour, imports, runtime_fingerprint)


def clear_caches() -> None:
    """For tests that stand in an edited source."""
    for cached in _CACHED:
        cached.cache_clear()
    _memo.clear()
