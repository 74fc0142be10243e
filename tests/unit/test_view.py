"""A task sees only the manifest keys it declared."""

from __future__ import annotations

import pytest

from vzstages.errors import UndeclaredRead
from vzstages.manifest import load_manifest
from vzstages.model.view import ManifestView


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
