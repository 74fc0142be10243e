"""The build host is not the image's to write: an image whose own tree points out of itself (here
planted by file_copy, as a package or a copied folder could) never makes a later task write the
build host's files. Each write lands inside the image, or the build stops with a clear error."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from vzstages.build import load_plan
from vzstages.host import Host
from vzstages.volume.disk import opened_readonly

from ..conftest import REPO
from .conftest import nothing_left, vzstages, with_workspace

pytestmark = pytest.mark.system

# Image path -> where its planted link points: every file a later task writes (vagrant's user,
# sudoers and keys; cleanup's machine ids, logs and temporary files; minimize_size's apt settings).
PLANTED = {
    "etc/sudoers.d/vagrant": "/etc/sudoers.d/vzstages-trust-test",
    "home/vagrant": "/root",
    "etc/machine-id": "/etc/machine-id",
    "var/lib/dbus/machine-id": "/etc/machine-id",
    "etc/apt/apt.conf.d/90-vzstages-autoclean": "/etc/apt/apt.conf.d/99vzstages-trust-test",
    "var/log/host-logs": "/var/log",
    "var/tmp/host-root": "/",
    "root/.bash_history": "/root/.bash_history",
}
HOST_PATHS = [
    Path("/etc/sudoers.d/vzstages-trust-test"),
    Path("/root/.ssh/authorized_keys"),
    Path("/etc/machine-id"),
    Path("/var/lib/dbus/machine-id"),
    Path("/etc/apt/apt.conf.d/99vzstages-trust-test"),
    Path("/root/.bash_history"),
]


def snapshot() -> dict[str, str | None]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None for p in HOST_PATHS}


@pytest.fixture
def host_guarded(tmp_path):
    """Hash the host's paths before; put them back after, should the guard ever fail."""
    saved = tmp_path / "saved"
    saved.mkdir()
    for path in HOST_PATHS:
        if path.is_file():
            shutil.copy2(path, saved / path.name)
    before = snapshot()
    yield before
    for path in HOST_PATHS:
        if (saved / path.name).exists():
            shutil.copy2(saved / path.name, path)
        elif path.exists() and before[str(path)] is None:
            path.unlink()


def test_planted_symlinks_never_make_the_build_write_the_host(cache, workspace, tmp_path, host_guarded):
    planted = tmp_path / "planted"
    for inside, target in PLANTED.items():
        link = planted / inside
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    manifest = with_workspace(
        REPO / "manifests/virtualbox-vagrant.yml",
        workspace,
        tmp_path / "planted.yml",
        edit={"8GiB": "2GiB", "-vagrant\n": "-planted\n"},
    )
    manifest.write_text(
        manifest.read_text()
        + f"  file_copy:\n    files:\n      - {{src: {planted}, dst: /}}\n"
        + "  minimize_size:\n    apt: {autoclean: true}\n"
    )
    out = vzstages("build", str(manifest), cache=cache, check=False)
    assert snapshot() == host_guarded, "the build wrote the build host's files"
    nothing_left(cache)
    assert "Traceback" not in out.stdout + out.stderr
    assert out.returncode == 0, out.stdout + out.stderr
    # The writes landed inside the image, where its own links point.
    plan = load_plan(manifest, cache)
    top = plan.checkpoint(plan.stage("cleanup"))
    (tmp_path / "inspect").mkdir()
    with opened_readonly(Host(), top, plan.manifest.layout, tmp_path / "inspect") as tree:
        root = tree.root
        assert (root / "etc/sudoers.d/vzstages-trust-test").read_text() == "vagrant ALL=(ALL) NOPASSWD:ALL\n"
        assert "vagrant insecure public key" in (root / "root/.ssh/authorized_keys").read_text()
        assert (root / "etc/apt/apt.conf.d/99vzstages-trust-test").exists()
        assert os.readlink(root / "etc/machine-id") == "/etc/machine-id"  # a loop: left alone
    nothing_left(cache)
