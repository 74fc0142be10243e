"""Manifest loading and validation: every error names the file, the key path and the line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from vzstages.errors import ManifestError
from vzstages.manifest import load_manifest

from ..conftest import COMPAT, KVM_MANIFEST, REPO, TEST_KEY


def line_of(path: Path, needle: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), 1) if needle in text)


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    return caught.value.problems


def test_valid_manifest_loads(write_manifest):
    manifest = load_manifest(write_manifest(), build_time=datetime(2026, 1, 2, tzinfo=UTC))
    assert manifest.provider == "kvm"
    assert manifest.image_name == "test-bookworm-2026"
    assert manifest.layout.root.filesystem == "ext4"


def test_json_manifest_loads_with_lines(tmp_path):
    import yaml

    data = yaml.safe_load(KVM_MANIFEST)
    data["system"]["colour"] = "blue"
    path = tmp_path / "m.json"
    path.write_text(json.dumps(data, indent=2))
    [problem] = problems_of(path)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if '"colour"' in text)
    assert problem.startswith(f"{path}:{line}: system.colour: unknown key 'colour'")


def test_unknown_key_names_file_path_and_line(write_manifest):
    path = write_manifest(
        KVM_MANIFEST.replace("  hostname: alpha\n", "  hostname: alpha\n  hostnmae: beta\n")
    )
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(path, 'hostnmae')}: system.hostnmae: unknown key 'hostnmae'")
    assert "hostname" in problem  # the allowed keys are listed


def test_bad_size_explains_the_format(write_manifest):
    path = write_manifest(KVM_MANIFEST.replace("size: 1GiB", "size: 1 gig"))
    [problem] = problems_of(path)
    assert problem.startswith(
        f"{path}:{line_of(path, '1 gig')}: volume.partitions.root.size: '1 gig' is not valid"
    )
    assert "8GiB" in problem


def test_missing_required_key(write_manifest):
    path = write_manifest(KVM_MANIFEST.replace("  bootloader: grub\n", ""))
    [problem] = problems_of(path)
    assert "system: missing required key 'bootloader'" in problem
    assert problem.startswith(f"{path}:{line_of(path, 'system:')}:")


def test_all_problems_reported_at_once(write_manifest):
    text = KVM_MANIFEST.replace("architecture: amd64", "architecture: sparc").replace(
        "timezone: UTC", "timezone: 12"
    )
    problems = problems_of(write_manifest(text))
    assert len(problems) == 2
    assert any(
        "system.architecture: 'sparc' is not supported (choose one of: amd64, arm64, i386)" in p
        for p in problems
    )
    assert any("system.timezone: expected a string, got 12" in p for p in problems)


def test_unknown_plugin_and_provider_are_named(write_manifest):
    text = KVM_MANIFEST.replace("name: kvm", "name: openstack") + "plugins:\n  frobnicate: {}\n"
    problems = problems_of(write_manifest(text))
    assert any("provider.name: unknown provider 'openstack' (available: " in p for p in problems)
    assert any("plugins.frobnicate: unknown plugin 'frobnicate'" in p for p in problems)
    assert not any("virtio" in p for p in problems)  # an unknown provider's keys are not noise


def test_provider_schema_layer_applies(write_manifest):
    path = write_manifest(KVM_MANIFEST.replace("virtio: [virtio_blk]", "virtio: [virtio_floppy]"))
    [problem] = problems_of(path)
    assert "provider.virtio[0]: 'virtio_floppy' is not supported" in problem


def test_grub_cannot_boot_unpartitioned_volume(write_manifest):
    path = write_manifest(KVM_MANIFEST.replace("type: gpt", "type: none"))
    [problem] = problems_of(path)
    assert "volume.partitions.type: grub cannot boot an unpartitioned volume" in problem


def test_partition_too_small_for_its_filesystem(write_manifest):
    path = write_manifest(
        KVM_MANIFEST.replace("filesystem: ext4\n      size: 1GiB", "filesystem: xfs\n      size: 100MiB")
    )
    [problem] = problems_of(path)
    assert "volume.partitions.root.size: 100MiB is too small for xfs (at least 300MiB)" in problem


def test_msdos_holds_four_partitions(write_manifest):
    extra = "".join(
        f"    {n}:\n      filesystem: ext4\n      size: 64MiB\n" for n in ("boot", "var", "tmp", "home")
    )
    text = KVM_MANIFEST.replace("type: gpt", "type: msdos").replace("    root:\n", extra + "    root:\n")
    [problem] = problems_of(write_manifest(text))
    assert "an msdos table holds at most 4 partitions, this one needs 5" in problem


def test_unknown_name_field(write_manifest):
    [problem] = problems_of(write_manifest(KVM_MANIFEST.replace("{%Y}", "{system.flavour}")))
    assert "name: unknown field {system.flavour}" in problem


def test_unknown_release(write_manifest):
    [problem] = problems_of(write_manifest(KVM_MANIFEST.replace("release: bookworm", "release: hamm2")))
    assert "system.release: unknown release 'hamm2'" in problem


def test_archived_release_warns(write_manifest):
    manifest = load_manifest(write_manifest(KVM_MANIFEST.replace("release: bookworm", "release: stretch")))
    assert any("stretch is end-of-life" in w for w in manifest.warnings)


def test_invalid_yaml_names_line(write_manifest):
    path = write_manifest(KVM_MANIFEST.replace("  locale: en_US\n", "  locale: [en_US\n"))
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:")
    assert "not valid YAML/JSON" in problem


def test_empty_sections_accepted_as_bootstrap_vz_did(write_manifest):
    manifest = load_manifest(
        write_manifest(KVM_MANIFEST.replace("packages:\n  install: [less]\n", "packages:\n"))
    )
    assert manifest.get("packages") == {}


def test_ec2_retired_features_are_clear(write_manifest):
    text = KVM_MANIFEST.replace(
        "name: kvm\n  virtio: [virtio_blk]", "name: ec2\n  virtualization: pvm"
    ).replace("backing: qcow2", "backing: s3")
    problems = problems_of(write_manifest(text))
    assert any("paravirtual (pvm) AMIs are retired" in p for p in problems)
    assert any("S3 (instance-store) AMIs are retired" in p for p in problems)


def test_firmware_defaults_to_uefi_on_arm64_and_bios_elsewhere(write_manifest):
    assert load_manifest(write_manifest()).firmware == "bios"
    arm = load_manifest(write_manifest(KVM_MANIFEST.replace("architecture: amd64", "architecture: arm64")))
    assert arm.firmware == "uefi" and arm.layout.partitions[0].name == "efi"
    uefi = KVM_MANIFEST.replace("bootloader: grub", "bootloader: grub\n  firmware: uefi")
    assert load_manifest(write_manifest(uefi)).layout.partitions[0].filesystem == "vfat"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            {"architecture: amd64": "architecture: arm64\n  firmware: bios"},
            "arm64 machines boot only with UEFI",
        ),
        ({"architecture: amd64": "architecture: i386\n  firmware: uefi"}, "UEFI images are built for amd64"),
        (
            {"bootloader: grub": "bootloader: extlinux\n  firmware: uefi"},
            "UEFI images boot with grub, not extlinux",
        ),
        (
            {"bootloader: grub": "bootloader: grub\n  firmware: uefi", "type: gpt": "type: msdos"},
            "volume.partitions.type: UEFI images need a gpt partition table, not msdos",
        ),
        (
            {"backing: qcow2": "backing: lvm", "bootloader: grub": "bootloader: extlinux"},
            "extlinux cannot read LVM",
        ),
        (
            {"backing: qcow2": "backing: lvm", "hostname: ": "hostname: x\nplugins:\n  expand_root: {}\n#"},
            "plugins.expand_root: growing a root on LVM at boot is not supported",
        ),
        ({"backing: qcow2": "backing: qcow2\n  volumegroup: vg"}, "only means something with backing: lvm"),
    ],
)
def test_rules_across_keys_are_clear(write_manifest, edit, message):
    text = KVM_MANIFEST
    for old, new in edit.items():
        text = text.replace(old, new)
    problems = problems_of(write_manifest(text))
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize("path", sorted(COMPAT.rglob("*.yml")), ids=lambda p: p.name)
def test_compat_manifests_plan_or_fail_clearly(path):
    """Each bootstrap-vz manifest validates and compiles, or fails naming what is unsupported."""
    from vzstages.cache.store import Store
    from vzstages.compiler.plan import compile_plan

    try:
        manifest = load_manifest(path)
    except ManifestError as error:
        assert error.problems
        for problem in error.problems:
            assert problem.startswith(f"{path}:"), problem
            assert any(w in problem for w in ("unknown", "retired", "not supported", "out of scope")), problem
        return
    plan = compile_plan(manifest, Store(Path("/nonexistent")), secret_key=TEST_KEY)
    assert [s.name for s in plan.stages][:2] == ["volume", "os"]


@pytest.mark.parametrize("name", [".", ".."])
def test_lvm_names_lvm_refuses_are_refused_first(write_manifest, name):
    text = KVM_MANIFEST.replace("backing: qcow2", f"backing: lvm\n  volumegroup: '{name}'")
    problems = problems_of(write_manifest(text))
    assert any("volume.volumegroup" in p for p in problems), problems


def test_an_empty_cache_folder_is_an_error_not_the_current_folder():
    from vzstages.cache.store import cache_folder
    from vzstages.errors import VzError

    with pytest.raises(VzError, match="cache folder is empty"):
        cache_folder("")


def test_retired_pvgrub_names_the_whole_fix_at_once(write_manifest):
    text = KVM_MANIFEST.replace("bootloader: grub", "bootloader: pvgrub").replace("type: gpt", "type: none")
    [problem] = [p for p in problems_of(write_manifest(text)) if "pvgrub" in p]
    assert "grub with a partition table (volume.partitions.type: gpt or msdos)" in problem
    assert "extlinux" in problem
    # Following it in one edit gives a valid manifest: no second refusal one step later.
    fixed = text.replace("bootloader: pvgrub", "bootloader: grub").replace("type: none", "type: gpt")
    load_manifest(write_manifest(fixed, "fixed.yml"))


def test_ec2_hvm_boots_an_unpartitioned_volume_with_extlinux(copy_manifest):
    from vzstages.cache.store import Store
    from vzstages.compiler.plan import compile_plan

    path = copy_manifest(REPO / "manifests/ec2.yml")
    text = (
        path.read_text()
        .replace("bootloader: grub", "bootloader: extlinux")
        .replace("type: gpt", "type: none")
    )
    path.write_text(text)
    plan = compile_plan(load_manifest(path), Store(Path("/nonexistent")), secret_key=TEST_KEY)
    tasks = {t.name() for s in plan.stages for t in s.tasks}
    assert (
        "common.extlinux.InstallExtlinux" in tasks and "plugins.expand_root.tasks.InstallExpandRoot" in tasks
    )
    assert not any("grub" in t for t in tasks)


@pytest.mark.parametrize("depth", [33, 3000, 100_000])
def test_deep_nesting_is_refused_by_name_before_pyyamls_own_parse(write_manifest, depth):
    """PyYAML's scanner is quadratic in flow nesting: 3000 `[` took up to 11 s before its
    recursion stopped. libyaml's event stream is read first, so the depth is refused at once."""
    path = write_manifest("name: x\nsystem:\n  deep: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert caught.value.problems == [f"{path}:3: nested more than 32 levels deep"]
