"""`vzstages plan`: a stage that runs names what changed against its closest cached entry."""

from __future__ import annotations

from pathlib import Path

from vzstages.cache.record import Record
from vzstages.cache.store import Store
from vzstages.compiler.explain import explain
from vzstages.compiler.plan import compile_plan
from vzstages.manifest import load_manifest

from ..conftest import KVM_MANIFEST, fake_entry


def publish_all(path: Path, cache: Path) -> None:
    """Pretend a build of `path` completed: a checkpoint and a record for each stage."""
    plan = compile_plan(load_manifest(path), Store(cache))
    plan.store.ensure()
    for stage in plan.stages:
        parent = (stage.parent.name, stage.parent.key) if stage.parent else None
        if stage.disk:
            fake_entry(plan.store, stage.name, stage.key, parent, inputs=stage.inputs, created=1.0)
        else:
            base = plan.base(stage)
            below = plan.store.lookup(base.name, base.key, disk=True) if base else None
            record = Record(
                stage.name,
                stage.key,
                stage.parent.key,
                stage.parent.name,
                stage.inputs,
                created=1.0,
                parent_digest=below.digest if below else "",
            )
            plan.store.save_record(record)


def statuses(path: Path, cache: Path) -> dict[str, list[str] | str]:
    plan = compile_plan(load_manifest(path), Store(cache))
    return {s.stage.name: ("cached" if s.hit else s.reasons) for s in explain(plan)}


def test_fresh_cache_says_never_built(tmp_path, write_manifest):
    result = statuses(write_manifest(), tmp_path / "cache")
    assert result["volume"] == ["never built"]
    assert result["os"] == ["parent stage volume runs"]


def test_hostname_change_is_named(tmp_path, write_manifest):
    cache = tmp_path / "cache"
    publish_all(write_manifest(), cache)
    result = statuses(
        write_manifest(KVM_MANIFEST.replace("hostname: alpha", "hostname: beta"), "b.yml"), cache
    )
    assert result["volume"] == result["os"] == result["packages"] == "cached"
    assert result["system"] == ["manifest key system.hostname: 'alpha' -> 'beta'"]
    assert result["cleanup"] == ["parent stage system runs"]


def test_package_list_change_is_named(tmp_path, write_manifest):
    cache = tmp_path / "cache"
    publish_all(write_manifest(), cache)
    result = statuses(write_manifest(KVM_MANIFEST.replace("[less]", "[less, vim]"), "b.yml"), cache)
    assert result["packages"] == ["manifest key packages.install: ['less'] -> ['less', 'vim']"]


def test_changed_file_and_task_code_are_named(tmp_path, write_manifest, edit_source):
    deb = tmp_path / "local.deb"
    deb.write_bytes(b"one")
    path = write_manifest(KVM_MANIFEST.replace("[less]", "[less, ./local.deb]"))
    cache = tmp_path / "cache"
    publish_all(path, cache)
    deb.write_bytes(b"two")
    assert statuses(path, cache)["packages"] == ["file changed: ./local.deb"]

    edit_source("vzstages.common.cleanup")
    deb.write_bytes(b"one")
    result = statuses(path, cache)
    assert result["packages"] == "cached"
    assert "task code changed: common.cleanup.CleanApt" in result["cleanup"]


def test_all_cached_after_a_complete_build(tmp_path, write_manifest):
    path = write_manifest()
    publish_all(path, tmp_path / "cache")
    plan_status = statuses(path, tmp_path / "cache")
    assert plan_status.pop("image") == [
        "output missing or overwritten: " + load_manifest(path).image_name + ".qcow2"
    ]
    assert set(plan_status.values()) == {"cached"}


def test_the_stages_stacked_on_one_are_its_disk_descendants_in_chain_order(tmp_path, write_manifest):
    """What a pull may bring along with a stage: never the image (it has no checkpoint)."""
    plan = compile_plan(load_manifest(write_manifest()), Store(tmp_path / "cache"))
    names = [s.name for s in plan.stages]
    assert [s.name for s in plan.stacked_on(plan.stage("volume"))] == names[1:5]
    assert [s.name for s in plan.stacked_on(plan.stage("packages"))] == ["system", "cleanup"]
    assert plan.stacked_on(plan.stage("cleanup")) == []
