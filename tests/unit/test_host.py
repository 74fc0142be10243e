from __future__ import annotations

import logging

import pytest

from vzstages.common import archive
from vzstages.errors import CommandError, HostError
from vzstages.host import Host, require_tools


def test_commands_are_logged_with_their_output(caplog):
    caplog.set_level(logging.DEBUG, logger="vzstages.host")
    result = Host().run(["sh", "-c", "echo hello; echo oops >&2"])
    assert result.output.split() == ["hello", "oops"]
    assert "$ sh -c echo hello; echo oops >&2" in caplog.text
    assert "oops" in caplog.text


def test_failure_raises_with_output_tail():
    with pytest.raises(CommandError) as caught:
        Host().run(["sh", "-c", "echo why it failed; exit 3"])
    assert caught.value.returncode == 3
    assert "exit 3" in str(caught.value) and "why it failed" in str(caught.value)


def test_secret_input_is_not_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="vzstages.host")
    Host().run(["sh", "-c", "cat >/dev/null"], input="root:hunter2\n", secret_input=True)
    Host().run(["cat"], input="harmless\n")
    assert "hunter2" not in caplog.text
    assert "stdin: harmless" in caplog.text


def test_missing_tools_reported_together_with_packages():
    with pytest.raises(HostError) as caught:
        require_tools(["sh", "no-such-tool-1", "zerofree-not-here"])
    message = str(caught.value)
    assert "no-such-tool-1" in message and "zerofree-not-here" in message
    assert "sh (" not in message


def test_host_mirror_from_deb822_and_one_line_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n"
    )
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://other.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\n"
        "Types: deb\nURIs: http://other.example/debian-security\nSuites: bookworm-security\n"
        "Components: main\n"
    )
    assert archive.host_mirror(tmp_path) == "http://mirror.example/debian"
    assert archive.host_security_mirror(tmp_path) == "http://other.example/debian-security"
    (tmp_path / "sources.list").unlink()
    assert archive.host_mirror(tmp_path) == "http://other.example/debian"


def test_debootstrap_default_mirror_read_from_the_script(tmp_path):
    script = tmp_path / "debootstrap"
    script.write_text('#!/bin/sh\nDEF_MIRROR="http://default.example/debian"\n')
    assert archive.debootstrap_default_mirror(script) == "http://default.example/debian"


def test_security_mirror_follows_the_archive_convention(monkeypatch):
    monkeypatch.setattr(archive, "host_security_mirror", lambda: None)
    twin = "http://m.example/debian-security"
    assert archive.choose_security_mirror(None, "http://m.example/debian", False) == twin
    assert (
        archive.choose_security_mirror("http://s.example/x/", "http://m.example/debian", True)
        == "http://s.example/x"
    )
    monkeypatch.setattr(archive, "host_security_mirror", lambda: "http://host.example/debian-security")
    # a mirror the manifest chose brings its own -security twin; otherwise the host's wins
    assert archive.choose_security_mirror(None, "http://m.example/debian", True) == twin
    assert (
        archive.choose_security_mirror(None, "http://m.example/debian", False)
        == "http://host.example/debian-security"
    )


def test_foreign_architecture_needs_a_binfmt_handler_with_the_f_flag(tmp_path):
    from vzstages.common.bootstrap import foreign_architecture_problem, host_architecture

    assert foreign_architecture_problem(host_architecture(), tmp_path) is None
    foreign = "arm64" if host_architecture() == "amd64" else "amd64"
    qemu = {"arm64": "aarch64", "amd64": "x86_64"}[foreign]
    assert "qemu-user-static" in (foreign_architecture_problem(foreign, tmp_path) or "")
    (tmp_path / f"qemu-{qemu}").write_text(
        f"enabled\ninterpreter /usr/libexec/qemu-binfmt/{qemu}\nflags: P\n"
    )
    assert "lacks the F flag" in (foreign_architecture_problem(foreign, tmp_path) or "")
    (tmp_path / f"qemu-{qemu}").write_text(
        f"enabled\ninterpreter /usr/libexec/qemu-binfmt/{qemu}\nflags: PF\n"
    )
    assert foreign_architecture_problem(foreign, tmp_path) is None


def test_commands_run_with_the_builds_umask_locale_and_time_zone_not_the_callers(monkeypatch):
    """A hardened root shell (umask 077, another locale and time zone) builds the same image."""
    import os

    from vzstages.host import Host

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    old = os.umask(0o077)
    try:
        out = Host().run(["sh", "-c", 'umask; echo "$TZ $LC_ALL"']).output.split()
    finally:
        os.umask(old)
    assert out == ["0022", "UTC", "C.UTF-8"]
