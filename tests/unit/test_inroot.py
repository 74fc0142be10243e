"""Writes into the image resolve inside it, whatever symlinks the image holds (openat2 and the
user-space walker alike)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from vzstages.volume import confined
from vzstages.volume.inroot import ImagePath


@pytest.fixture(params=["openat2", "walker"])
def resolver(request, monkeypatch):
    monkeypatch.setattr(confined, "use_openat2", request.param == "openat2")
    return request.param


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path]:
    """An image whose tree points out of itself in every way, and a 'host' folder to protect."""
    host = tmp_path / "host"
    (host / "etc/sudoers.d").mkdir(parents=True)
    (host / "etc/machine-id").write_text("host-machine-id\n")
    (host / "root/.ssh").mkdir(parents=True)
    root = tmp_path / "image"
    (root / "etc/sudoers.d").mkdir(parents=True)
    (root / "home").mkdir()
    (root / "etc/machine-id").symlink_to(host / "etc/machine-id")  # absolute, to the host
    (root / "etc/sudoers.d/vagrant").symlink_to(host / "etc/sudoers.d/x")
    (root / "home/vagrant").symlink_to(host / "root")
    (root / "up").symlink_to("../../../../../host")  # relative, climbing out
    (root / "loop").symlink_to("loop")
    # What a real image has where the links point: its own /etc, /root ...
    inside = root / str(host).lstrip("/")
    (inside / "etc/sudoers.d").mkdir(parents=True)
    (inside / "root").mkdir()
    (root / "host/etc").mkdir(parents=True)
    return root, host


def host_snapshot(host: Path) -> dict[str, bytes | str]:
    snap: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(host):
        for name in filenames + dirnames:
            path = Path(dirpath) / name
            snap[str(path)] = path.read_bytes() if path.is_file() else "dir"
    return snap


def test_writes_through_planted_symlinks_stay_inside(resolver, planted):
    root, host = planted
    before = host_snapshot(host)
    image = ImagePath(root)
    (image / "etc/machine-id").write_text("")
    (image / "etc/sudoers.d/vagrant").write_text("vagrant ALL=(ALL) NOPASSWD:ALL\n", 0o440)
    (image / "home/vagrant/.ssh").mkdir(parents=True, exist_ok=True)
    (image / "home/vagrant/.ssh/authorized_keys").write_text("ssh-ed25519 AAAA\n")
    (image / "up/etc/evil").write_text("x")
    assert host_snapshot(host) == before
    # Each landed where the link points when read inside the image.
    inside = root / str(host).lstrip("/")
    assert (inside / "etc/machine-id").read_text() == ""
    assert (inside / "etc/sudoers.d/x").stat().st_mode & 0o777 == 0o440
    assert (inside / "root/.ssh/authorized_keys").exists()
    assert (root / "host/etc/evil").read_text() == "x"  # '..' stops at the image root


def test_reads_never_leave_the_image(resolver, planted):
    root, _ = planted
    with pytest.raises(FileNotFoundError):  # the image's own copy of that path does not exist
        (ImagePath(root) / "etc/machine-id").read_text()


def test_host_path_is_inside_the_image(resolver, planted):
    root, host = planted
    resolved = (ImagePath(root) / "home/vagrant").host_path()
    assert resolved == (root / str(host).lstrip("/") / "root").resolve()


def test_symlink_loop_is_an_error_not_a_hang(resolver, planted):
    root, _ = planted
    with pytest.raises(OSError) as info:
        (ImagePath(root) / "loop/x").write_text("x")
    assert info.value.errno == errno.ELOOP


def test_unlink_and_rmtree_remove_the_link_not_its_target(resolver, planted):
    root, host = planted
    before = host_snapshot(host)
    (ImagePath(root) / "home/vagrant").rmtree()
    (ImagePath(root) / "etc/machine-id").unlink()
    assert not (root / "home/vagrant").is_symlink() and not (root / "etc/machine-id").is_symlink()
    assert host_snapshot(host) == before


def test_copy_tree_keeps_inner_symlinks_as_links(resolver, tmp_path):
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub/file").write_text("data")
    (source / "link").symlink_to("/etc/passwd")
    os.chmod(source / "sub", 0o750)
    root = tmp_path / "image"
    root.mkdir()
    (ImagePath(root) / "copy").copy_tree_from(source)
    assert (root / "copy/sub/file").read_text() == "data"
    assert os.readlink(root / "copy/link") == "/etc/passwd"
    assert (root / "copy/sub").stat().st_mode & 0o777 == 0o750


def test_dotdot_is_refused_when_building_a_path(tmp_path):
    with pytest.raises(ValueError):
        ImagePath(tmp_path) / "etc/../../x"


def test_not_a_path_for_open(tmp_path):
    with pytest.raises(TypeError), open(ImagePath(tmp_path) / "x", "w"):  # type: ignore[call-overload]
        pass


def test_missing_ok_covers_a_missing_parent(resolver, tmp_path):
    (ImagePath(tmp_path) / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (ImagePath(tmp_path) / "no/such/tree").rmtree()
    with pytest.raises(FileNotFoundError):
        (ImagePath(tmp_path) / "var/lib/dbus/machine-id").unlink()


def test_a_rename_racing_openat2_is_retried_then_walked(monkeypatch, planted):
    """openat2(RESOLVE_IN_ROOT) answers EAGAIN when any rename on the host races a `..` step
    (a parallel build is enough): the open is retried, and the walker answers if it persists."""
    root, _host = planted
    (root / "var/log").mkdir(parents=True)
    (root / "var/log/README").symlink_to("../../etc/machine-id")
    calls = []

    def racing(root_fd, rel, flags, mode):
        calls.append(rel)
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN), rel)

    monkeypatch.setattr(confined, "use_openat2", True)
    monkeypatch.setattr(confined, "_openat2", racing)
    (ImagePath(root) / "var/log/README").write_text("cleared")
    assert len(calls) == confined.OPENAT2_ATTEMPTS
    assert confined.use_openat2, "a race is not a kernel without openat2"
    assert (root / str(_host).lstrip("/") / "etc/machine-id").read_text() == "cleared"


def test_a_fifo_a_device_or_a_huge_file_in_the_image_is_refused_not_read(resolver, tmp_path):
    """A planted FIFO would hang the build, /dev/zero's twin never end the read, a sparse
    terabyte fill memory: each is an OSError, as a missing file is."""
    root = tmp_path / "image"
    (root / "etc").mkdir(parents=True)
    os.mkfifo(root / "etc/fifo")
    if os.geteuid() == 0:
        os.mknod(root / "etc/zero", 0o600 | 0o020000, os.makedev(1, 5))
    with open(root / "etc/huge", "wb") as f:
        f.truncate(1 << 40)
    (root / "etc/small").write_text("fine\n")
    image = ImagePath(root)
    for name in ("fifo", "zero") if os.geteuid() == 0 else ("fifo",):
        with pytest.raises(OSError, match="not a regular file"):
            (image / "etc" / name).read_bytes()
    with pytest.raises(OSError) as huge:
        (image / "etc/huge").read_bytes()
    assert huge.value.errno == errno.EFBIG
    assert (image / "etc/small").read_text() == "fine\n"
    assert (image / "etc/small").read_bytes(limit=5) == b"fine\n"
    with pytest.raises(OSError):
        (image / "etc/small").read_bytes(limit=4)


def test_host_files_are_read_bounded(tmp_path):
    from vzstages.bounded import read_regular

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "record.json").write_text("{}")
    with pytest.raises(OSError, match="not a regular file"):
        read_regular(tmp_path / "fifo", 1 << 20)
    with pytest.raises(OSError, match="not a regular file"):
        read_regular(Path("/dev/zero"), 1 << 20)
    with pytest.raises(FileNotFoundError):
        read_regular(tmp_path / "absent", 10)
    assert read_regular(tmp_path / "record.json", 2) == b"{}"
    with pytest.raises(OSError, match="larger than 1 bytes"):
        read_regular(tmp_path / "record.json", 1)
