"""The folder tree is the architecture: these rules keep adding a provider, plugin or backend to
one folder, and every host command in host.py. Read from the source's imports, not by convention."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ..conftest import REPO

PACKAGE = REPO / "vzstages"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module a file imports, absolute (relative imports resolved against its package)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


MODULES = {module_name(p): imported(p) for p in sorted(PACKAGE.rglob("*.py"))}


def component(module: str) -> str | None:
    """`vzstages.plugins.ansible` for anything in the ansible plugin's folder; None for the core."""
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] in ("plugins", "providers"):
        return ".".join(parts[:3])
    return None


# Plugins that exist for one provider (their validate refuses any other) build on its tasks.
EXTENDS = {
    "vzstages.plugins.ec2_publish": "vzstages.providers.ec2",
    "vzstages.plugins.ec2_launch": "vzstages.providers.ec2",
}


def test_the_rules_see_the_imports_they_judge():
    # The resolver itself: a plugin's relative imports of the core resolve as Python would.
    assert "vzstages.common.files" in MODULES["vzstages.plugins.ansible.tasks"]
    assert "vzstages.providers.ec2.regions" in MODULES["vzstages.plugins.ec2_publish"]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if component(m) is None))
def test_no_core_module_names_a_plugin_or_a_provider(module):
    named = sorted(n for n in MODULES[module] if component(n) and n.count(".") >= 2)
    # The registry finds components by folder, at run time; the core imports none of them.
    assert named == [], f"{module} imports {named}"


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if (component(m) or "").startswith("vzstages.plugins"))
)
def test_a_plugin_imports_no_other_plugin(module):
    own = component(module)
    others = sorted(n for n in MODULES[module] if component(n) not in (None, own, EXTENDS.get(own or "")))
    assert others == [], f"{module} imports {others}: shared helpers belong in vzstages/common"


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if (component(m) or "").startswith("vzstages.providers"))
)
def test_a_provider_imports_no_plugin_and_no_other_provider(module):
    own = component(module)
    others = sorted(n for n in MODULES[module] if component(n) not in (None, own))
    assert others == [], f"{module} imports {others}"


def test_host_commands_run_in_host_py_only():
    runners = {
        "subprocess.run",
        "subprocess.Popen",
        "subprocess.check_output",
        "subprocess.call",
        "os.system",
    }
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "host.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                value = node.func.value
                name = f"{value.id}.{node.func.attr}" if isinstance(value, ast.Name) else ""
                if name in runners:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
    assert found == []
