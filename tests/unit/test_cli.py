"""The command line: each subcommand takes what it uses, `shell`'s command after `--`, and a plan
that says how long it expects to take."""

from __future__ import annotations

import sys

import pytest

from vzstages.cli import main, parse

from ..conftest import KVM_MANIFEST, fake_entry


def test_shell_takes_its_command_after_a_double_dash():
    args = parse(["--cache", "C", "shell", "m.yml", "packages", "--", "cat", "--help", "/etc/x"])
    assert (args.cache, args.manifest, args.stage, args.argv) == (
        "C",
        "m.yml",
        "packages",
        ["cat", "--help", "/etc/x"],
    )
    assert parse(["shell", "--cache", "D", "m.yml"]).cache == "D"
    assert parse(["shell", "m.yml"]).argv == []


def test_a_double_dash_where_no_command_takes_one_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse(["validate", "m.yml", "--", "x"])
    assert "unexpected arguments after --: x" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["validate", "boot", "verify", "diff", "shell"])
def test_a_subcommand_lists_only_the_options_it_uses(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    assert "--remote" not in text
    assert ("--cache" in text) == (command in ("shell", "diff", "verify"))  # they read the cache


def test_plan_gives_each_stage_its_expected_time_and_the_total(tmp_path, write_manifest, capsys):
    from vzstages.build import load_plans

    built = write_manifest()
    plan = load_plans([built], tmp_path / "cache")[0]
    plan.store.ensure()
    seconds = {"volume": 0.2, "os": 23.4, "packages": 42.9, "system": 1.0, "cleanup": 0.5}
    for stage in plan.stages:
        if stage.disk:
            parent = (stage.parent.name, stage.parent.key) if stage.parent else None
            fake_entry(plan.store, stage.name, stage.key, parent, timings={"total": seconds[stage.name]})
    renamed = write_manifest(KVM_MANIFEST.replace("hostname: alpha", "hostname: renamed"), "renamed.yml")
    assert main(["--cache", str(tmp_path / "cache"), "plan", str(renamed)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert lines["system"].endswith("tasks, about 1.0s") and lines["cleanup"].endswith("tasks, about 0.5s")
    assert lines["image"].endswith("tasks, never built in this cache")
    assert "cached" in lines["packages"] and "about" not in lines["packages"]
    assert "3 stages to build: about 1.5s for 2, 1 never built here" in out


def test_an_image_another_manifest_made_is_not_replaced_without_force(tmp_path, write_manifest, capsys):
    import json

    from vzstages.build import load_plans
    from vzstages.commands import refuse_to_overwrite
    from vzstages.errors import VzError
    from vzstages.results import result_path

    workspace = f"bootstrapper:\n  workspace: {tmp_path / 'build'}\n"
    one = write_manifest(KVM_MANIFEST + workspace, "one.yml")
    copy = write_manifest(KVM_MANIFEST.replace("hostname: alpha", "hostname: beta") + workspace, "copy.yml")
    plan = load_plans([one], tmp_path / "cache")[0]
    image = plan.stage("image")
    image.outputs[0].parent.mkdir(parents=True)
    image.outputs[0].write_text("an image one.yml made")
    made = {"manifest": str(one), "stages": [{"stage": "image", "key": image.key}]}
    result_path(plan.manifest.workspace, plan.manifest.image_name).write_text(json.dumps(made))

    assert main(["--cache", str(tmp_path / "cache"), "build", str(copy)]) == 2
    error = capsys.readouterr().err
    assert f"was made from {one}; building {copy} would replace it" in error and "--force" in error
    refuse_to_overwrite(plan)  # its own manifest: rebuilding it is what a build does
    edited = write_manifest(KVM_MANIFEST.replace("hostname: alpha", "hostname: gamma") + workspace, "one.yml")
    refuse_to_overwrite(load_plans([edited], tmp_path / "cache")[0])  # one.yml, edited: the same manifest
    same = write_manifest(KVM_MANIFEST + workspace, "same.yml")  # another file, the very same image
    refuse_to_overwrite(load_plans([same], tmp_path / "cache")[0])
    with pytest.raises(VzError, match="--force replaces it"):
        refuse_to_overwrite(load_plans([copy], tmp_path / "cache")[0])


def test_boot_interactive_puts_the_console_and_qemus_monitor_on_the_terminal(tmp_path, monkeypatch, capsys):
    from vzstages.host import Host

    image = tmp_path / "disk.qcow2"
    image.write_bytes(b"")
    ran: list[list[str]] = []
    monkeypatch.setattr(Host, "attached", lambda self, argv, env=None: ran.append(argv) or 0)
    assert main(["boot", str(image), "--interactive"]) == 0
    [argv] = ran
    assert argv[argv.index("-serial") + 1] == "mon:stdio" and "-monitor" not in argv
    assert f"file={image},format=qcow2" in " ".join(argv) and "snapshot=on" in " ".join(argv)
    assert "Ctrl-a x quits" in capsys.readouterr().out


def test_host_attached_gives_the_command_the_terminal_and_returns_its_status(tmp_path):
    from vzstages.host import Host

    assert Host().attached(["sh", "-c", f"umask > {tmp_path / 'mask'}; exit 3"]) == 3
    assert (tmp_path / "mask").read_text().strip() == "0022"


def test_a_build_that_met_a_moved_archive_runs_again_once_with_refresh(monkeypatch):
    from vzstages import commands

    ran: list[list[str]] = []

    def execv(path: str, argv: list[str]) -> None:
        ran.append(argv)
        raise SystemExit(0)

    monkeypatch.setattr(commands.os, "execv", execv)
    monkeypatch.setattr(commands.sys, "argv", ["vzstages", "--cache", "c", "build", "kvm.yml"])
    with pytest.raises(SystemExit):
        commands.plan_again_with_the_archive_now()
    assert ran == [[sys.executable, "-m", "vzstages", "--cache", "c", "build", "kvm.yml", "--refresh"]]
