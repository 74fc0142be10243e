"""The plan as doit tasks, doit's view of it, and a dependency file that survives SIGKILL."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from doit.doit_cmd import DoitMain

from vzstages.build import DOIT_PLUGINS, Build
from vzstages.cache.store import Store
from vzstages.commands import PlanLoader
from vzstages.compiler.doit_tasks import doit_tasks
from vzstages.compiler.plan import compile_plan
from vzstages.manifest import load_manifest

from ..conftest import KVM_MANIFEST, REPO, fake_entry


def plan_for(path: Path, cache: Path):
    return compile_plan(load_manifest(path), Store(cache))


def test_one_doit_task_per_stage_chained_by_checkpoints(tmp_path, write_manifest):
    plan = plan_for(write_manifest(), tmp_path / "cache")
    tasks = list(doit_tasks([plan], lambda plan, stage, display: {"status": "built"}))
    assert [t["basename"] for t in tasks] == ["volume", "os", "packages", "system", "cleanup", "image"]
    assert tasks[0]["task_dep"] == []
    for parent, child in itertools.pairwise(tasks[:-1]):
        assert "file_dep" not in child  # the store says whether a stage is done, nothing else
        assert child["task_dep"] == [parent["basename"]]
    for task, stage in zip(tasks, plan.stages, strict=True):
        if stage.disk:
            assert task["targets"] == [str(tmp_path / "cache" / "stages" / f"{stage.name}-{stage.key}.qcow2")]
        assert task["meta"]["key"] == stage.key
    assert tasks[-1]["targets"][0].endswith(".qcow2") and "/stages/" not in tasks[-1]["targets"][0]
    assert tasks[-1]["task_dep"] == [tasks[-2]["basename"]]


def run_doit(capfd, build: Build, *args: str) -> str:
    capfd.readouterr()
    code = DoitMain(PlanLoader(build), extra_config=DOIT_PLUGINS).run(list(args))
    sys.stdout.flush()
    out = capfd.readouterr().out
    assert code in (0, 1, None), out  # forget returns None
    return out


def test_doit_list_status_and_info_without_root(tmp_path, write_manifest, capfd):
    build = Build([plan_for(write_manifest(), tmp_path / "cache")])
    listing = run_doit(capfd, build, "list", "--status")
    lines = listing.splitlines()
    assert [line.split()[1] for line in lines] == ["volume", "os", "packages", "system", "cleanup", "image"]
    assert all(line.startswith("R ") for line in lines)
    info = run_doit(capfd, build, "info", "system")
    assert build.plan.stage("system").key in info
    assert "'will': 'run'" in info and "parent stage packages runs" in info
    assert "common.system.SetHostname" in info


def test_dodo_py_lists_stages(tmp_path, write_manifest):
    path = write_manifest()
    out = subprocess.run(
        [sys.executable, "-m", "doit", "list", f"manifest={path}", f"cache={tmp_path / 'c'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert [line.split()[0] for line in out.stdout.splitlines()] == [
        "volume",
        "os",
        "packages",
        "system",
        "cleanup",
        "image",
    ]
    assert "install the base system (mmdebstrap)" in out.stdout


def test_dodo_py_reports_invalid_manifest_cleanly(tmp_path, write_manifest):
    path = write_manifest(KVM_MANIFEST.replace("hostname: alpha", "hostname: -bad-"))
    out = subprocess.run(
        [sys.executable, "-m", "doit", "list", f"manifest={path}", f"cache={tmp_path / 'c'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "system.hostname: '-bad-' is not valid" in out.stderr
    assert "Traceback" not in out.stderr


def test_doit_asks_the_store_whether_a_stage_is_up_to_date(tmp_path, write_manifest, capfd):
    """A stage in the store is up to date for doit whatever doit's own database says (another
    build, another machine published it), and doit's check marks it used for gc."""
    plan = plan_for(write_manifest(), tmp_path / "cache")
    store = plan.store
    store.ensure()
    stage = plan.stage("volume")
    fake_entry(store, stage.name, stage.key, inputs=stage.inputs)
    calls: list[str] = []

    class RecordingBuild(Build):
        def run_stage(self, plan, stage, display=""):  # type: ignore[override]
            calls.append(stage.name)
            return {"cached": True}

    build = RecordingBuild([plan])
    os.utime(store.record_path(stage.name, stage.key), (1, 1))
    log = tmp_path / "doit.out"
    run_doit(capfd, build, "run", "--output-file", str(log), "volume")
    assert calls == []
    assert "volume   up to date" in log.read_text() and "nothing to do" in log.read_text()
    assert store.record_path(stage.name, stage.key).stat().st_mtime > 1  # touched: used now
    store.checkpoint(stage.name, stage.key).unlink()
    run_doit(capfd, build, "run", "volume")
    assert calls == ["volume"]


def test_durable_db_keeps_completed_tasks_after_sigkill(tmp_path):
    db = tmp_path / "dep.sqlite3"
    script = f"""
import os, signal
from doit.dependency import JSONCodec
from vzstages.compiler.doit_db import DurableSqliteDB
db = DurableSqliteDB({str(db)!r}, codec=JSONCodec())
db.set("volume", "_values_:", {{"cached": False}})
db.set("volume", "deps:", ["a"])
db.set("os", "_values_:", {{}})  # os is still running when the build is killed
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -9
    rows = dict(sqlite3.connect(db).execute("select task_id, task_data from doit").fetchall())
    assert list(rows) == ["volume"]
    assert json.loads(rows["volume"])["deps:"] == ["a"]


def test_several_manifests_share_their_common_stages_as_one_task(tmp_path, write_manifest):
    one = write_manifest(name="one.yml")
    two = write_manifest(KVM_MANIFEST.replace("hostname: alpha", "hostname: beta"), name="two.yml")
    plans = [plan_for(one, tmp_path / "cache"), plan_for(two, tmp_path / "cache")]
    everything = list(doit_tasks(plans, lambda plan, stage, display: {"status": "built"}))
    groups = [t for t in everything if t["name"] is None]
    assert [(g["basename"], g["doc"].split(" (")[0]) for g in groups] == [
        ("one", "build test-bookworm-" + plans[0].manifest.render("{%Y}")),
        ("two", "build test-bookworm-" + plans[0].manifest.render("{%Y}")),
    ]
    tasks = [t for t in everything if t["name"] is not None]
    names = [f"{t['basename']}:{t['name']}" for t in tasks]
    # volume, os and packages are the same stages: one task each, under the first manifest.
    assert names == [
        "one:volume", "one:os", "one:packages", "one:system", "one:cleanup", "one:image",
        "two:system", "two:cleanup", "two:image",
    ]  # fmt: skip
    two_system = tasks[names.index("two:system")]
    assert two_system["task_dep"] == ["one:packages"]
    assert two_system["actions"][0][1][2] == "two:system"
    assert tasks[names.index("one:packages")]["actions"][0][1][2] == "one+two:packages"


def test_a_matrix_file_and_a_comma_list_name_several_manifests(tmp_path, write_manifest):
    from vzstages.build import expand_manifests

    one = write_manifest(name="one.yml")
    two = write_manifest(name="two.yml")
    matrix = tmp_path / "matrix.yml"
    matrix.write_text("manifests: [one.yml, two.yml]\n")
    assert expand_manifests([str(matrix)]) == [one, two]
    assert expand_manifests([f"{one},{two}"]) == [one, two]


class PretendBuild(Build):
    """Runs no stage: each "builds" at once, writing its targets (checkpoint, image)."""

    def run_stage(self, plan, stage, display=""):  # type: ignore[override]
        for output in plan.targets(stage):
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(f"made by {stage.name}")
        return {"status": "built", "seconds": 0.0}


def test_a_partial_build_names_no_image_and_a_whole_one_writes_its_result_file(
    tmp_path, write_manifest, capfd
):
    manifest = write_manifest(KVM_MANIFEST + f"bootstrapper:\n  workspace: {tmp_path / 'build'}\n")
    build = PretendBuild([plan_for(manifest, tmp_path / "cache")])
    image = build.plan.stage("image").outputs[0]
    image.parent.mkdir(parents=True)
    image.write_text("an old image, from another run")
    out = tmp_path / "out.txt"
    run_doit(capfd, build, "run", "--output-file", str(out), "os")
    partial = out.read_text()
    assert "built volume, os" in partial and "image:" not in partial, partial
    run_doit(capfd, build, "run", "--output-file", str(out))
    whole = out.read_text()
    assert f"image: {image}" in whole, whole
    # The result file a pipeline reads: every stage, what this run did, the image's digest.
    result_file = image.with_name(image.name.removesuffix(".qcow2") + ".json")
    assert f"result: {result_file}" in whole, whole
    result = json.loads(result_file.read_text())
    assert [s["stage"] for s in result["stages"]] == [s.name for s in build.plan.stages]
    assert {s["status"] for s in result["stages"]} == {"built"}
    assert [s["key"] for s in result["stages"]] == [s.key for s in build.plan.stages]
    assert result["images"][0]["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert result["manifest"] == str(manifest) and result["vzstages"]


def test_two_manifests_writing_one_image_are_refused_before_any_stage(tmp_path, write_manifest):
    from vzstages.build import load_plans
    from vzstages.errors import VzError

    one = write_manifest(KVM_MANIFEST, "one.yml")
    other = write_manifest(KVM_MANIFEST.replace("hostname: alpha", "hostname: beta"), "other.yml")
    with pytest.raises(VzError, match="would both write"):
        load_plans([one, other], tmp_path / "cache")
    same = write_manifest(KVM_MANIFEST, "same.yml")  # the same image: one task, no conflict
    assert len(load_plans([one, same], tmp_path / "cache")) == 2


def test_version_and_a_misspelt_command(capsys):
    from vzstages import __version__
    from vzstages.cli import main

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"vzstages {__version__}"
    with pytest.raises(SystemExit):
        main(["biuld", "kvm.yml"])
    assert "did you mean 'build'?" in capsys.readouterr().err


def complete_entries(plan) -> None:
    """Pretend every stage of the plan was built: checkpoints linked by content, records, images."""
    from vzstages.cache.record import Record

    plan.store.ensure()
    for stage in plan.stages:
        parent = (stage.parent.name, stage.parent.key) if stage.parent else None
        if stage.disk:
            fake_entry(plan.store, stage.name, stage.key, parent, inputs=stage.inputs)
            continue
        base = plan.base(stage)
        below = plan.store.lookup(base.name, base.key, disk=True)
        for output in stage.outputs:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text("an image")
        from vzstages.cache.store import output_signature

        record = Record(stage.name, stage.key, parent[1], parent[0], stage.inputs, parent_digest=below.digest)
        record.outputs = {str(p): output_signature(p) for p in stage.outputs}
        plan.store.save_record(record)


def doit_agrees_with_plan(capfd, build: Build) -> dict[str, str]:
    from vzstages.compiler.explain import explain

    listing = run_doit(capfd, build, "list", "--status")
    doit_says = {line.split()[1]: line.split()[0] for line in listing.splitlines()}
    plan_says = {s.stage.name: ("U" if s.hit else "R") for s in explain(build.plan)}
    assert doit_says == plan_says
    return plan_says


def test_doit_list_status_plan_and_run_agree_whatever_doits_database_holds(tmp_path, write_manifest, capfd):
    workspace = f"bootstrapper:\n  workspace: {tmp_path / 'build'}\n"
    kvm = Build([plan_for(write_manifest(KVM_MANIFEST + workspace, "kvm.yml"), tmp_path / "cache")])
    complete_entries(kvm.plan)
    assert set(doit_agrees_with_plan(capfd, kvm).values()) == {"U"}
    # Another manifest built through doit in the same cache: its tasks of the same names save
    # their own state in doit's database.
    renamed = KVM_MANIFEST.replace("hostname: alpha", "hostname: beta").replace("test-", "other-")
    other = PretendBuild([plan_for(write_manifest(renamed + workspace, "other.yml"), tmp_path / "cache")])
    run_doit(capfd, other, "run", "--output-file", str(tmp_path / "out"))
    assert set(doit_agrees_with_plan(capfd, kvm).values()) == {"U"}
    # doit forget: doit's memory is not what decides; both still say the stage is done.
    run_doit(capfd, kvm, "forget", "system")
    assert set(doit_agrees_with_plan(capfd, kvm).values()) == {"U"}
    # A stage whose checkpoint is gone runs, for both, and so does everything after it.
    kvm.plan.store.record_path("system", kvm.plan.stage("system").key).unlink()
    says = doit_agrees_with_plan(capfd, kvm)
    assert [says[s] for s in ("packages", "system", "cleanup", "image")] == ["U", "R", "R", "R"]


def test_forget_dumpdb_and_strace_answer_clearly(tmp_path, write_manifest, capfd):
    workspace = f"bootstrapper:\n  workspace: {tmp_path / 'build'}\n"
    build = PretendBuild([plan_for(write_manifest(KVM_MANIFEST + workspace), tmp_path / "cache")])
    run_doit(capfd, build, "run", "--output-file", str(tmp_path / "out"), "os")
    dump = run_doit(capfd, build, "dumpdb")
    assert dump.startswith("os -> ") or "\nos -> " in dump, dump
    forgot = run_doit(capfd, build, "forget")  # no task: the manifest's stages
    assert "forgetting image" in forgot, forgot
    capfd.readouterr()
    code = DoitMain(PlanLoader(build), extra_config=DOIT_PLUGINS).run(["strace", "image"])
    assert code == 3 and "not supported" in capfd.readouterr().err


def test_json_makes_stdout_a_stream_of_events_ending_with_the_result(
    tmp_path, write_manifest, capfd, monkeypatch
):
    monkeypatch.setenv("VZSTAGES_EVENTS", "json")
    manifest = write_manifest(KVM_MANIFEST + f"bootstrapper:\n  workspace: {tmp_path / 'build'}\n")
    build = PretendBuild([plan_for(manifest, tmp_path / "cache")])
    out = run_doit(capfd, build, "run")
    events = [json.loads(line) for line in out.splitlines()]  # every line is one JSON event
    finished = [e for e in events if e["event"] == "stage_finished"]
    assert [(e["stage"], e["status"]) for e in finished] == [(s.name, "built") for s in build.plan.stages]
    assert events[-2]["event"] == "summary" and events[-2]["built"] == [s.name for s in build.plan.stages]
    result = events[-1]
    assert result["event"] == "result" and result["images"][0]["path"] == str(
        build.plan.stage("image").outputs[0]
    )
    assert json.loads(Path(result["path"]).read_text())["stages"] == result["stages"]
