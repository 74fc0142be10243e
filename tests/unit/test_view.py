"""A task sees only the manifest keys it declared."""

from __future__ import annotations

import pytest

from vzstages.errors import UndeclaredRead
from vzstages.manifest import load_manifest
from vzstages.model.view import ManifestView

from ..conftest import KVM_MANIFEST


def test_declared_keys_and_their_children_are_readable(write_manifest):
    view = ManifestView(load_manifest(write_manifest()), "T", ["system.hostname", "volume.partitions"])
    assert view.get("system.hostname") == "alpha"
    assert view.get("volume.partitions.root.size") == "1GiB"


def test_undeclared_read_raises_naming_task_and_key(write_manifest):
    view = ManifestView(load_manifest(write_manifest()), "my.Task", ["system.hostname"])
    with pytest.raises(UndeclaredRead, match=r"my.Task read manifest key 'system.release'"):
        view.get("system.release")
    with pytest.raises(UndeclaredRead):
        view.get("system")  # a parent of a declared key is wider than what was declared
    with pytest.raises(UndeclaredRead):
        view.has("packages.install")


def test_render_checks_the_fields_it_substitutes(write_manifest):
    view = ManifestView(load_manifest(write_manifest()), "T", ["system.release"])
    assert view.render("debian-{system.release}") == "debian-bookworm"
    with pytest.raises(UndeclaredRead):
        view.render("{system.architecture}")


def test_values_are_copies(write_manifest):
    manifest = load_manifest(write_manifest())
    view = ManifestView(manifest, "T", ["packages"])
    view.get("packages.install").append("vim")
    assert manifest.get("packages.install") == ["less"]


def all_tasks() -> list[type]:
    """Every Task class in vzstages: common, every provider, every plugin."""
    import importlib
    import pkgutil

    import vzstages
    from vzstages.model.task import Task

    for module in pkgutil.walk_packages(vzstages.__path__, "vzstages."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)

    def subclasses(cls: type) -> list[type]:
        return [s for c in cls.__subclasses__() for s in (c, *subclasses(c))]

    return sorted(
        {t for t in subclasses(Task) if t.__module__.startswith("vzstages.")}, key=lambda t: t.name()
    )


def merged_schema() -> dict:
    from vzstages import components
    from vzstages.manifest.layers import base_schema, merge

    schema = base_schema()
    for kind in ("providers", "plugins"):
        for name in components.available(kind):
            component = components.load(kind, name)
            assert component is not None
            schema = merge(schema, component.schema())
    return schema


def test_every_declared_read_is_a_key_of_the_schema():
    from vzstages.manifest.keypath import resolve

    schema = merged_schema()
    tasks = all_tasks()
    assert len(tasks) > 40
    unknown = [(t.name(), r) for t in tasks for r in t.reads if resolve(schema, r) is None]
    assert unknown == []


def test_a_key_with_dots_in_its_name_is_one_key(write_manifest):
    from vzstages.common.apt import WriteAptSettings
    from vzstages.manifest.keypath import resolve

    assert resolve(merged_schema(), "packages.apt.conf.d") == ("packages", "apt.conf.d")
    manifest = load_manifest(
        write_manifest(
            KVM_MANIFEST.replace(
                "packages:\n", "packages:\n  apt.conf.d:\n    10retries: 'Acquire::Retries \"3\";'\n"
            )
        )
    )
    view = ManifestView(manifest, "t", WriteAptSettings.reads)
    assert view.get("packages.apt.conf.d") == {"10retries": 'Acquire::Retries "3";'}
