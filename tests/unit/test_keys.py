"""Stage keys: stable across runs, machines and checkout paths; a late change leaves earlier keys alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vzstages.cache.store import Store
from vzstages.compiler.plan import compile_plan
from vzstages.manifest import load_manifest

from ..conftest import KVM_MANIFEST, REPO, TEST_KEY


def keys(path: Path) -> dict[str, str]:
    plan = compile_plan(load_manifest(path), Store(Path("/nonexistent")), secret_key=TEST_KEY)
    return {s.name: s.key for s in plan.stages}


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return [name for name in before if before[name] != after[name]]


def test_keys_are_stable_between_compilations(write_manifest):
    path = write_manifest()
    assert keys(path) == keys(path)


def test_keys_do_not_depend_on_checkout_path_or_manifest_location(tmp_path, write_manifest):
    path = write_manifest()
    elsewhere = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(REPO / "vzstages", elsewhere / "vzstages", ignore=shutil.ignore_patterns("__pycache__"))
    moved = tmp_path / "other-folder" / "renamed.yml"
    moved.parent.mkdir()
    shutil.copy(path, moved)
    script = (
        "import json,sys; from pathlib import Path; from vzstages.manifest import load_manifest;"
        "from vzstages.compiler.plan import compile_plan; from vzstages.cache.store import Store;"
        "p=compile_plan(load_manifest(sys.argv[1]), Store(Path('/x')));"
        "print(json.dumps({s.name: s.key for s in p.stages}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(moved)],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(elsewhere), "PATH": "/usr/bin:/bin"},
    )
    assert json.loads(out.stdout) == keys(path)


def test_late_change_keeps_earlier_keys(write_manifest):
    before = keys(write_manifest())
    after = keys(write_manifest(KVM_MANIFEST.replace("hostname: alpha", "hostname: beta"), name="b.yml"))
    assert changed(before, after) == ["system", "cleanup", "image"]


def test_package_change_starts_at_packages(write_manifest):
    before = keys(write_manifest())
    after = keys(
        write_manifest(KVM_MANIFEST.replace("install: [less]", "install: [less, vim]"), name="b.yml")
    )
    assert changed(before, after) == ["packages", "system", "cleanup", "image"]


def test_the_locale_is_generated_in_the_packages_stage(write_manifest):
    """locale-gen runs with the locales package, so a late change does not repeat it."""
    before = keys(write_manifest())
    after = keys(write_manifest(KVM_MANIFEST.replace("locale: en_US", "locale: de_DE"), name="b.yml"))
    assert changed(before, after) == ["packages", "system", "cleanup", "image"]


def test_partition_change_changes_everything(write_manifest):
    before = keys(write_manifest())
    after = keys(write_manifest(KVM_MANIFEST.replace("size: 1GiB", "size: 2GiB"), name="b.yml"))
    assert changed(before, after) == list(before)


def test_name_and_date_do_not_enter_disk_keys(write_manifest):
    before = keys(write_manifest())
    after = keys(write_manifest(KVM_MANIFEST.replace("name: test-", "name: renamed-"), name="b.yml"))
    assert after == before  # the name decides where the image lands, not what it holds


def test_file_content_enters_the_key(tmp_path, write_manifest):
    deb = tmp_path / "local.deb"
    deb.write_bytes(b"first")
    path = write_manifest(KVM_MANIFEST.replace("install: [less]", "install: [less, ./local.deb]"))
    before = keys(path)
    deb.write_bytes(b"second")
    assert changed(before, keys(path)) == ["packages", "system", "cleanup", "image"]


def test_task_code_enters_the_key(write_manifest, edit_source):
    path = write_manifest()
    before = keys(path)
    edit_source("vzstages.common.system")
    # common/system.py holds tasks of the packages and system stages
    assert changed(before, keys(path)) == ["packages", "system", "cleanup", "image"]


EC2_MANIFEST = KVM_MANIFEST.replace("name: kvm\n  virtio: [virtio_blk]", "name: ec2").replace(
    "backing: qcow2", "backing: ebs"
)


@pytest.mark.parametrize(
    ("module", "manifest", "first_changed"),
    [
        # A helper a task calls, in another module than the task's own.
        ("vzstages.common.bootable", KVM_MANIFEST, "packages"),  # kernel_cmdline, used by grub
        ("vzstages.common.apt", KVM_MANIFEST, "packages"),  # apt_install, used by every AptInstall
        ("vzstages.host", KVM_MANIFEST, "volume"),  # CHROOT_ENV, what every chroot command sees
        ("vzstages.providers.ec2.aws", EC2_MANIFEST, "publish"),  # what the publish stage calls
    ],
)
def test_code_a_task_can_run_enters_the_key(write_manifest, edit_source, module, manifest, first_changed):
    path = write_manifest(manifest)
    before = keys(path)
    edit_source(module)
    after = keys(path)
    names = list(before)
    assert changed(before, after) == names[names.index(first_changed) :]


def test_editing_a_plugin_leaves_the_stages_before_its_tasks(write_manifest, edit_source):
    path = write_manifest(KVM_MANIFEST + "plugins:\n  ntp:\n    servers: [time.example.org]\n")
    before = keys(path)
    edit_source("vzstages.plugins.ntp")  # installs in packages, configures in system
    assert changed(before, keys(path)) == ["packages", "system", "cleanup", "image"]
    path = write_manifest(KVM_MANIFEST + "plugins:\n  commands:\n    commands: [['true']]\n", "c.yml")
    before = keys(path)
    edit_source("vzstages.plugins.commands.tasks")  # user stage only
    assert changed(before, keys(path)) == ["user", "cleanup", "image"]


def test_editing_one_common_task_leaves_stages_that_cannot_run_it(write_manifest, edit_source):
    path = write_manifest()
    before = keys(path)
    edit_source("vzstages.common.cleanup")
    assert changed(before, keys(path)) == ["cleanup", "image"]


def test_a_symlinked_input_is_hashed_as_what_it_points_to(tmp_path, write_manifest):
    deb = tmp_path / "real.deb"
    deb.write_bytes(b"first")
    (tmp_path / "link.deb").symlink_to(deb)
    path = write_manifest(KVM_MANIFEST.replace("install: [less]", "install: [less, ./link.deb]"))
    before = keys(path)
    deb.write_bytes(b"rotated")  # the link is the same, what it points to is not
    assert changed(before, keys(path)) == ["packages", "system", "cleanup", "image"]


def test_secrets_enter_inputs_only_as_hashes(write_manifest):
    text = KVM_MANIFEST.replace(
        "name: kvm\n  virtio: [virtio_blk]",
        "name: ec2\n  credentials:\n    access-key: AKIAEXAMPLE\n    secret-key: hunter2-secret",
    ).replace("backing: qcow2", "backing: ebs")
    manifest = load_manifest(write_manifest(text))
    assert ("provider", "credentials", "secret-key") in manifest.secrets
    from vzstages.compiler.keys import declared_values
    from vzstages.model.phases import Phase
    from vzstages.model.task import Task

    class ReadsCredentials(Task):
        phase = Phase.IMAGE_PUBLISHING
        reads = ("provider.credentials",)

    values = declared_values([ReadsCredentials], manifest, b"k" * 32)
    dumped = json.dumps(values)
    assert "hunter2-secret" not in dumped
    assert values["provider.credentials"]["secret-key"].startswith("hmac-sha256:")
    # Keyed: another cache's key gives another hash, so a leaked record cannot be checked
    # against a word list without the key.
    other = declared_values([ReadsCredentials], manifest, b"x" * 32)
    assert other["provider.credentials"]["secret-key"] != values["provider.credentials"]["secret-key"]
    assert values["provider.credentials"]["access-key"] == "AKIAEXAMPLE"


def _reworded(source: bytes) -> bytes:
    """The module with a comment before every top-level statement and every docstring
    reworded: what a tidy-up does, and no change of behaviour."""
    import ast

    text = source.decode()
    lines = text.splitlines(keepends=True)
    tree = ast.parse(text)
    inserts: list[tuple[int, int, str]] = []  # (line, column, text), applied from the end
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            value = first.value if isinstance(first, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                line = lines[value.lineno - 1]
                column = value.col_offset
                while line[column] not in "'\"":
                    column += 1  # past a prefix such as r
                quotes = 3 if line[column : column + 3] in ('"""', "'''") else 1
                inserts.append((value.lineno - 1, column + quotes, "Reworded, and longer. "))
    for stmt in tree.body:
        inserts.append((stmt.lineno - 1, 0, "# A new comment, then a blank line.\n\n"))
    for line, column, insert in sorted(inserts, reverse=True):
        lines[line] = lines[line][:column] + insert + lines[line][column:]
    return "".join(lines).encode()


def test_comments_and_docstrings_in_every_module_leave_every_key(monkeypatch):
    """Keys follow behaviour: tidying every module of vzstages (comments, docstrings, blank
    lines) throws away no checkpoint, in any stage of any example manifest."""
    from vzstages.compiler import code

    manifests = [REPO / "manifests/kvm.yml", REPO / "manifests/ec2.yml", REPO / "manifests/kvm-plugins.yml"]
    before = {m.name: keys(m) for m in manifests}
    real = code.module_source.__wrapped__
    tidied = []

    def source(name: str) -> bytes:
        tidied.append(name)
        edited = _reworded(real(name))
        assert edited != real(name) or not real(name).strip(), name
        return edited

    code.clear_caches()
    monkeypatch.setattr(code, "module_source", source)
    try:
        after = {m.name: keys(m) for m in manifests}
    finally:
        monkeypatch.undo()
        code.clear_caches()
    assert len(set(tidied)) > 30
    assert after == before


def test_a_change_of_behaviour_still_changes_the_keys_of_the_stages_that_can_run_it(
    write_manifest, edit_source
):
    path = write_manifest()
    before = keys(path)
    edit_source("vzstages.common.system")  # the hostname task's module
    after = keys(path)
    assert changed(before, after)[0] in ("packages", "system")
    assert before["volume"] == after["volume"] and before["os"] == after["os"]


@pytest.mark.parametrize(
    "module",
    [
        "vzstages.manifest",
        "vzstages.manifest.layers",
        "vzstages.cli",
        "vzstages.cache.store",
        "vzstages.runner",
    ],
)
def test_loading_validation_the_cli_and_the_cache_are_in_no_key(write_manifest, edit_source, module):
    """They decide whether and when a stage runs, never what it holds."""
    path = write_manifest()
    before = keys(path)
    edit_source(module)
    assert keys(path) == before


def test_the_build_hosts_tools_that_shape_a_stage_enter_its_key(write_manifest, monkeypatch):
    """Another mke2fs gives other bytes: another key for the volume stage (and all after it);
    another mmdebstrap leaves the volume stage alone."""
    from vzstages.compiler import plan as plan_module

    real = plan_module.package_versions
    path = write_manifest()
    before = keys(path)
    for package, first in (("e2fsprogs", "volume"), ("mmdebstrap", "os")):

        def versions(packages: tuple[str, ...], package: str = package) -> dict[str, str]:
            found = dict(real(packages))
            if package in found:
                found[package] = "9:99-changed"
            return found

        monkeypatch.setattr(plan_module, "package_versions", versions)
        after = keys(path)
        assert changed(before, after)[0] == first
        assert len(changed(before, after)) == len(before) - list(before).index(first)
    monkeypatch.undo()


def test_the_code_memo_is_only_a_speed_up(tmp_path, write_manifest, monkeypatch):
    """What parsing found is remembered under the module's exact source: a planted or damaged
    memo changes no key, and a true one answers without parsing anything."""
    import json

    from vzstages.build import load_plans
    from vzstages.compiler import code

    def plan_keys() -> dict[str, str]:
        code.clear_caches()
        return {s.name: s.key for s in load_plans([path], tmp_path / "cache")[0].stages}

    path = write_manifest()
    first = plan_keys()
    memo = tmp_path / "cache" / "code-memo.json"
    true = memo.read_text()
    entries = json.loads(true)
    assert len(entries) > 20
    planted = {":".join([k.split(":")[0], "0" * 64, *k.split(":")[2:]]): ["f" * 32, []] for k in entries}
    memo.write_text(json.dumps(planted))
    assert plan_keys() == first
    memo.write_text("[" * 100_000)
    assert plan_keys() == first
    memo.write_text(true)

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed although the memo knew the answer")

    monkeypatch.setattr(code.ast, "parse", no_parsing)
    assert plan_keys() == first
