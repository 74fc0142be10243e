"""The remote cache on each backend, a real S3 API on loopback (a moto server, real HTTP, real
boto3) and a shared folder: a chain pushed from one store and pulled into another is the same,
bit for bit; anything tampered with, unsigned when signatures are required, cut short, or
unreachable is a miss with a warning, never a hit and never a failed build. The tests that take
`shared` are the backends' conformance suite: they run once per backend."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest

from vzstages.cache import remote_manage
from vzstages.cache.record import Record, file_sha256
from vzstages.cache.remote import Remote
from vzstages.cache.remote_config import RemoteConfig, remote_config
from vzstages.cache.store import Store
from vzstages.errors import VzError

VOL, OSK, PKG = "a" * 32, "b" * 32, "c" * 32


def qcow2(path: Path, backing: Path | None = None, data: bytes = b"") -> None:
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    argv += ["-F", "qcow2", "-b", backing.name, str(path)] if backing else [str(path), "64M"]
    subprocess.run(argv, check=True)
    if data:
        source = path.with_suffix(".data")
        source.write_bytes(data)
        write = f"write -s {source} 0 {len(data)}"
        subprocess.run(["qemu-io", "-c", write, str(path)], check=True, capture_output=True)
        source.unlink()


def local_chain(store: Store) -> None:
    """volume -> os -> packages, real qcow2 files with a little data each."""
    store.ensure()
    chain = [("volume", VOL, None), ("os", OSK, ("volume", VOL)), ("packages", PKG, ("os", OSK))]
    for stage, key, parent in chain:
        backing = store.checkpoint(*parent) if parent else None
        # Random data: it does not compress, so a transfer takes many packets to cut in the middle.
        qcow2(store.checkpoint(stage, key), backing, data=b"x" * 4096 + os.urandom(256 * 1024))
        record = Record(stage, key, parent[1] if parent else None, parent[0] if parent else None, {})
        record.digest = file_sha256(store.checkpoint(stage, key))
        below = store.lookup(*parent, disk=True) if parent else None
        record.parent_digest = below.digest if below else ""
        record.facts = {"stage": stage}
        record.timings = {"total": 10.0}
        store.save_record(record)


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    name = f"vzstages-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


def remote_s3(store: Store, bucket: str, endpoint: str, **keys: Path) -> Remote:
    return Remote(RemoteConfig(f"s3://{bucket}/team", endpoint_url=endpoint, **keys), store)


class Shared:
    """One remote cache, as its backend holds it: S3 on a moto server, or a shared folder. The
    tests below run against both (the backend conformance suite); `put`, `tamper` and `delete`
    play whoever else can write the store."""

    def __init__(self, url: str, endpoint: str | None, s3=None, bucket: str = ""):
        self.url, self.endpoint, self.s3, self.bucket = url, endpoint, s3, bucket

    def remote(self, store: Store, **keys: Path) -> Remote:
        return Remote(RemoteConfig(self.url, endpoint_url=self.endpoint, **keys), store)

    def get(self, name: str) -> bytes:
        if self.s3 is not None:
            return self.s3.get_object(Bucket=self.bucket, Key=f"team/{name}")["Body"].read()
        return (Path(self.url) / name).read_bytes()

    def put(self, name: str, body: bytes) -> None:
        if self.s3 is not None:
            self.s3.put_object(Bucket=self.bucket, Key=f"team/{name}", Body=body)
            return
        (Path(self.url) / name).parent.mkdir(parents=True, exist_ok=True)
        (Path(self.url) / name).write_bytes(body)

    def tamper(self, name: str, change) -> None:
        self.put(name, change(self.get(name)))

    def delete(self, name: str) -> None:
        if self.s3 is not None:
            self.s3.delete_object(Bucket=self.bucket, Key=f"team/{name}")
        else:
            (Path(self.url) / name).unlink()

    def names(self) -> set[str]:
        if self.s3 is not None:
            listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="team/").get("Contents", [])
            return {str(o["Key"]).removeprefix("team/") for o in listing}
        root = Path(self.url)
        return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(params=["s3", "directory"])
def shared(request, tmp_path: Path) -> Shared:
    if request.param == "directory":
        (tmp_path / "team-cache").mkdir()
        return Shared(str(tmp_path / "team-cache"), None)
    s3, bucket = request.getfixturevalue("s3"), request.getfixturevalue("bucket")
    return Shared(f"s3://{bucket}/team", request.getfixturevalue("moto_endpoint"), s3, bucket)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_pushed_chain_pulls_into_another_store_bit_for_bit(tmp_path, shared):
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    local_chain(a)
    pusher = shared.remote(a)
    assert [pusher.push(s, k) for s, k in (("volume", VOL), ("os", OSK), ("packages", PKG))] == [True] * 3
    assert not pusher.push("os", OSK)  # already there: nothing sent again
    assert pusher.counters.sent > 0
    puller = shared.remote(b)
    b.ensure()
    assert puller.pull("packages", PKG, ("os", OSK), held=False)  # pulls os and volume first
    for stage, key in (("volume", VOL), ("os", OSK), ("packages", PKG)):
        assert digest(b.checkpoint(stage, key)) == digest(a.checkpoint(stage, key))
        record = b.lookup(stage, key, disk=True)
        assert record is not None and record.facts == {"stage": stage}
        assert record.origin["remote"] == shared.url
    assert b.hit("packages", PKG, disk=True, outputs=[], touch=False) is not None
    assert puller.counters.pulled == [f"volume-{VOL}", f"os-{OSK}", f"packages-{PKG}"]
    assert not list(b.stages.glob(".*"))  # no temporary file left
    assert puller.warnings == []


def test_checkpoints_travel_compressed(tmp_path, shared):
    a = Store(tmp_path / "a")
    local_chain(a)
    pusher = shared.remote(a)
    assert pusher.push("volume", VOL)
    record = pusher.lookup("volume", VOL)
    assert record is not None and record.size < record.raw_size


def pushed(tmp_path: Path, shared: Shared, **keys: Path) -> tuple[Store, Remote]:
    a = Store(tmp_path / "a")
    local_chain(a)
    pusher = shared.remote(a, **keys)
    for stage, key in (("volume", VOL), ("os", OSK), ("packages", PKG)):
        assert pusher.push(stage, key)
    b = Store(tmp_path / "b")
    b.ensure()
    return b, pusher


def flip_byte(body: bytes) -> bytes:
    return body[:100] + bytes([body[100] ^ 1]) + body[101:]


def test_a_flipped_byte_in_a_blob_is_a_miss(tmp_path, shared):
    b, pusher = pushed(tmp_path, shared)
    sha = pusher.lookup("volume", VOL).sha256  # type: ignore[union-attr]
    shared.tamper(f"blobs/{sha}", flip_byte)
    puller = shared.remote(b)
    assert not puller.pull("os", OSK, ("volume", VOL), held=False)
    assert b.lookup("volume", VOL, disk=True) is None and b.lookup("os", OSK, disk=True) is None
    assert any("does not match its digest" in w or "not zstd" in w for w in puller.warnings), puller.warnings
    assert not list(b.stages.glob(".*"))


def test_a_record_naming_the_wrong_parent_is_a_miss(tmp_path, shared):
    b, _ = pushed(tmp_path, shared)

    def other_parent(body: bytes) -> bytes:
        document = json.loads(body)
        document["parent"] = document["record"]["parent"] = "d" * 32
        return json.dumps(document).encode()

    shared.tamper(f"records/os-{OSK}.json", other_parent)
    puller = shared.remote(b)
    assert not puller.pull("os", OSK, ("volume", VOL), held=False)
    assert b.lookup("os", OSK, disk=True) is None


def test_a_missing_parent_blob_is_a_miss(tmp_path, shared):
    b, pusher = pushed(tmp_path, shared)
    shared.delete(f"blobs/{pusher.lookup('volume', VOL).sha256}")  # type: ignore[union-attr]
    puller = shared.remote(b)
    assert not puller.pull("os", OSK, ("volume", VOL), held=False)
    assert b.lookup("os", OSK, disk=True) is None


def test_a_stage_pulled_with_what_comes_after_it_brings_the_whole_chain_in_one_go(tmp_path, shared):
    """A fresh machine's first stage pulls the chain through the plan's last stage the remote
    has (its blobs fetched at once), so the later stages find theirs already there."""
    b, _ = pushed(tmp_path, shared)
    puller = shared.remote(b)
    ahead = [("os", OSK), ("packages", PKG), ("system", "d" * 32)]  # the remote has no system
    assert puller.pull("volume", VOL, None, held=False, ahead=ahead)
    assert puller.counters.pulled == [f"volume-{VOL}", f"os-{OSK}", f"packages-{PKG}"]
    assert all(puller.pulled_this_run(stage, key) for stage, key in ahead[:2])
    assert b.hit("packages", PKG, disk=True, outputs=[], touch=False) is not None
    assert not list(b.stages.glob(".*"))
    assert puller.warnings == []


def test_a_damaged_blob_mid_chain_keeps_its_parents_and_drops_what_follows(tmp_path, shared):
    b, pusher = pushed(tmp_path, shared)
    shared.tamper(f"blobs/{pusher.lookup('os', OSK).sha256}", flip_byte)  # type: ignore[union-attr]
    puller = shared.remote(b)
    assert puller.pull("volume", VOL, None, held=False, ahead=[("os", OSK), ("packages", PKG)])
    assert b.lookup("volume", VOL, disk=True) is not None
    assert b.lookup("os", OSK, disk=True) is None and b.lookup("packages", PKG, disk=True) is None
    assert not list(b.stages.glob(".*"))  # the packages blob fetched beside it is not left behind
    assert any("os-" in w for w in puller.warnings)


def keypair(folder: Path, name: str) -> tuple[Path, Path]:
    private = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(private)], check=True)
    return private, Path(f"{private}.pub")


@pytest.mark.parametrize("signer", ["nobody", "untrusted", "trusted"])
def test_with_trusted_keys_only_a_trusted_signature_is_a_hit(tmp_path, shared, signer):
    trusted_private, trusted_public = keypair(tmp_path, "ci")
    other_private, _ = keypair(tmp_path, "laptop")
    keys = {"trusted": trusted_private, "untrusted": other_private}
    signing = {"signing_key": keys[signer]} if signer in keys else {}
    b, _ = pushed(tmp_path, shared, **signing)
    puller = shared.remote(b, trusted_keys=trusted_public)
    assert puller.pull("volume", VOL, None, held=False) == (signer == "trusted")
    if signer != "trusted":
        assert any("not signed" in w or "not trusted" in w for w in puller.warnings), puller.warnings


def test_a_signature_over_other_content_is_a_miss(tmp_path, shared):
    private, public = keypair(tmp_path, "ci")
    b, _ = pushed(tmp_path, shared, signing_key=private)

    def more_facts(body: bytes) -> bytes:
        signature, _, payload = body.partition(b"\n")
        document = json.loads(payload)
        document["record"]["facts"]["kernel_version"] = "evil"
        return signature + b"\n" + json.dumps(document).encode()

    shared.tamper(f"records/volume-{VOL}.json", more_facts)
    puller = shared.remote(b, trusted_keys=public)
    assert not puller.pull("volume", VOL, None, held=False)
    assert any("does not match" in w for w in puller.warnings)


def test_an_unreachable_remote_is_a_warning_and_a_miss(tmp_path, s3):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe closes
    store = Store(tmp_path / "b")
    store.ensure()
    gone = remote_s3(store, "bucket", f"http://127.0.0.1:{port}")
    assert gone.lookup("os", OSK) is None
    assert not gone.pull("os", OSK, None, held=False)
    assert any("building locally" in w for w in gone.warnings)


class CuttingProxy:
    """A TCP proxy to the moto server that drops every connection once `limit` bytes have
    crossed it in the given direction: the remote going away in the middle of a transfer."""

    def __init__(self, target: str, limit: int, direction: str):
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.limit = limit
        self.direction = direction  # "download" or "upload"
        self.moved = 0
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self.pipe, args=(client, upstream, "upload"), daemon=True).start()
            threading.Thread(target=self.pipe, args=(upstream, client, "download"), daemon=True).start()

    def pipe(self, source: socket.socket, sink: socket.socket, direction: str) -> None:
        try:
            while data := source.recv(65536):
                if direction == self.direction:
                    self.moved += len(data)
                    if self.moved > self.limit:
                        break
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def test_the_remote_going_away_mid_pull_leaves_no_hit(tmp_path, s3, bucket, moto_endpoint):
    b, _ = pushed(tmp_path, Shared(f"s3://{bucket}/team", moto_endpoint, s3, bucket))
    proxy = CuttingProxy(moto_endpoint, limit=300_000, direction="download")
    puller = remote_s3(b, bucket, proxy.url)
    assert not puller.pull("packages", PKG, ("os", OSK), held=False)
    assert puller.warnings
    for stage, key in (("volume", VOL), ("os", OSK), ("packages", PKG)):
        entry = b.lookup(stage, key, disk=True)
        # Whatever arrived whole is a complete, checked entry; nothing half-written is.
        assert entry is None or b.hit(stage, key, disk=True, outputs=[], touch=False) is not None
    assert b.lookup("packages", PKG, disk=True) is None
    assert not list(b.stages.glob(".*"))


def test_the_remote_going_away_mid_push_leaves_nothing_to_pull(tmp_path, s3, bucket, moto_endpoint):
    a = Store(tmp_path / "a")
    local_chain(a)
    proxy = CuttingProxy(moto_endpoint, limit=100_000, direction="upload")
    pusher = remote_s3(a, bucket, proxy.url)
    assert not pusher.push("volume", VOL)
    assert pusher.warnings
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="team/records/")
    assert listing.get("KeyCount", 0) == 0  # no record: nothing a pull could take for a hit
    assert remote_s3(Store(tmp_path / "b"), bucket, moto_endpoint).lookup("volume", VOL) is None


def test_remote_gc_keeps_chains_whole(tmp_path, shared):
    from vzstages.cache import remote_manage

    pushed(tmp_path, shared)
    fresh = shared.remote(Store(tmp_path / "c"))
    deleted = remote_manage.collect(fresh, max_size=1, max_age=None)
    assert [d.split(" ")[0] for d in deleted] == [f"packages-{PKG}", f"os-{OSK}", f"volume-{VOL}"]
    assert shared.names() == set()


def test_remote_configuration_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("VZSTAGES_REMOTE", raising=False)
    assert remote_config() is None
    assert remote_config("s3://bucket/x", "off") is None
    for url, mode in (("http://bucket", None), ("s3://bucket", "sometimes")):
        with pytest.raises(VzError):
            remote_config(url, mode)
    (tmp_path / "not-a-key").write_text("hello")
    with pytest.raises(VzError, match="signing key"):
        remote_config("s3://bucket", signing_key=str(tmp_path / "not-a-key"))
    with pytest.raises(VzError, match="trusted keys"):
        remote_config("s3://bucket", trusted_keys=str(tmp_path / "not-a-key"))


def test_a_host_whose_parent_differs_from_the_remotes_pushes_nothing_over_it(tmp_path, shared):
    """The remote holds consistent chains only: B built os itself, A pushed its own first."""
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    local_chain(a)
    local_chain(b)  # the same keys, other bytes (random data)
    assert shared.remote(a).push("volume", VOL)
    assert shared.remote(a).push("os", OSK)
    other = shared.remote(b)
    assert not other.push("os", OSK)  # A's is there
    assert not other.push("packages", PKG)  # built over B's os, which is not the remote's
    assert any("not pushed" in w for w in other.warnings), other.warnings
    assert other.lookup("packages", PKG) is None


def test_pulling_over_a_local_parent_with_other_bytes_takes_the_remotes_chain(tmp_path, shared):
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    local_chain(a)
    local_chain(b)
    pusher = shared.remote(a)
    assert all(pusher.push(s, k) for s, k in (("volume", VOL), ("os", OSK), ("packages", PKG)))
    b.delete(next(e for e in b.entries() if e.record.stage == "packages"))
    puller = shared.remote(b)
    assert [r.name for r in puller.chain("packages", PKG) or []] == [
        f"packages-{PKG}",
        f"os-{OSK}",
        f"volume-{VOL}",
    ]
    assert puller.pull("packages", PKG, ("os", OSK), held=False)
    for stage, key in (("volume", VOL), ("os", OSK), ("packages", PKG)):
        assert digest(b.checkpoint(stage, key)) == digest(a.checkpoint(stage, key))
    assert b.hit("packages", PKG, disk=True, outputs=[], touch=False) is not None


def test_a_blob_that_unpacks_to_other_bytes_than_its_record_names_is_a_miss(tmp_path, shared):
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    local_chain(a)
    pusher = shared.remote(a)
    record = a.lookup("volume", VOL, disk=True)
    assert record is not None
    record.digest = "0" * 64  # a record that lies about the checkpoint's bytes
    a.save_record(record)
    assert pusher.push("volume", VOL)
    b.ensure()
    puller = shared.remote(b)
    assert not puller.pull("volume", VOL, None, held=False)
    assert any("other bytes than its record names" in w for w in puller.warnings), puller.warnings
    assert b.lookup("volume", VOL, disk=True) is None


def test_a_zstd_bomb_stops_at_the_declared_size(tmp_path, shared):
    """A 20 KB blob that unpacks to 600 MiB, under a record that declares 256 KiB: the pull
    stops as soon as more than that is produced, never writing the bomb out."""
    import zstandard

    b, _ = pushed(tmp_path, shared)
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(600 << 20))
    sha = hashlib.sha256(bomb).hexdigest()
    shared.put(f"blobs/{sha}", bomb)

    def point_at_bomb(body: bytes) -> bytes:
        document = json.loads(body)
        document["blob"].update(sha256=sha, size=len(bomb), raw_size=256 << 10)
        return json.dumps(document).encode()

    shared.tamper(f"records/volume-{VOL}.json", point_at_bomb)
    puller = shared.remote(b)
    assert not puller.pull("volume", VOL, None, held=False)
    assert any("unpacks to more than" in w for w in puller.warnings), puller.warnings
    assert not list(b.stages.glob(".*"))


def test_a_junk_record_is_replaced_by_the_next_valid_push(tmp_path, shared):
    a = Store(tmp_path / "a")
    local_chain(a)
    shared.put(f"records/volume-{VOL}.json", b"[" * 100_000)
    pusher = shared.remote(a)
    assert pusher.push("volume", VOL)
    assert any("does not verify" in w for w in pusher.warnings), pusher.warnings
    assert shared.remote(a).lookup("volume", VOL) is not None


@pytest.mark.parametrize(
    "content",
    [
        "junk line\n",
        'from="10.0.0.1",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI0000 x\n',
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ== rsa\n",
    ],
)
def test_a_bad_trusted_keys_file_is_one_clear_error(tmp_path, content):
    path = tmp_path / "trusted"
    path.write_text(content)
    with pytest.raises(VzError, match="trusted keys"):
        remote_config("s3://bucket", trusted_keys=str(path))


def test_an_authorized_keys_line_with_options_is_a_trusted_key(tmp_path):
    _, public = keypair(tmp_path, "ci")
    path = tmp_path / "trusted"
    path.write_text('from="10.0.0.1",no-pty ' + public.read_text())
    assert remote_config("s3://bucket", trusted_keys=str(path)) is not None


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "directory"])
def test_a_key_file_that_is_not_a_file_is_refused_without_hanging(tmp_path, special):
    if special == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    elif special == "directory":
        path = tmp_path
    else:
        path = Path(special)
    for option in ("signing_key", "trusted_keys"):
        with pytest.raises(VzError, match="not a regular file"):
            remote_config("s3://bucket", **{option: str(path)})


def test_remote_gc_removes_what_does_not_verify_and_keeps_valid_chains(tmp_path, shared, monkeypatch):
    from vzstages.cache import remote_manage

    monkeypatch.setattr(remote_manage, "ORPHAN_AGE", -1.0)
    pushed(tmp_path, shared)
    junk = {"records/system-" + "e" * 32 + ".json": b"[" * 100_000, "records/os-bad.json": b"x"}
    for name, body in junk.items():
        shared.put(f"{name}", body)
    shared.put("blobs/" + "f" * 64, b"an orphan")
    fresh = shared.remote(Store(tmp_path / "c"))
    deleted = remote_manage.collect(fresh, max_size=None, max_age=None)
    assert len(deleted) == 3, deleted  # two junk records and the orphan blob; every valid entry stays
    left = {f"team/{n}" for n in shared.names()}
    assert all(f"team/{name}" not in left for name in junk)
    assert "team/blobs/" + "f" * 64 not in left
    assert {
        f"team/records/{s}-{k}.json" for s, k in (("volume", VOL), ("os", OSK), ("packages", PKG))
    } <= left


def test_remote_gc_refuses_to_delete_in_read_mode(tmp_path, shared):
    from vzstages.cache import remote_manage

    pushed(tmp_path, shared)
    reader = Remote(
        RemoteConfig(shared.url, mode="read", endpoint_url=shared.endpoint), Store(tmp_path / "c")
    )
    with pytest.raises(VzError, match="not with --remote-mode read"):
        remote_manage.collect(reader, max_size=1, max_age=None)
    assert shared.remote(Store(tmp_path / "d")).lookup("packages", PKG) is not None


def test_listing_an_unreachable_remote_is_one_clear_error(tmp_path):
    from vzstages.cache import remote_manage

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gone = remote_s3(Store(tmp_path / "c"), "bucket", f"http://127.0.0.1:{port}")
    with pytest.raises(VzError, match="cannot list it"):
        remote_manage.list_lines(gone)


def test_two_hosts_pushing_one_chain_at_once_leave_one_consistent_remote(tmp_path, shared):
    """Two hosts built the same keys (over other bytes) and push at the same moment: whatever
    each push does, the remote ends with chains whose links all hold, and a third host pulls one."""
    stores = [Store(tmp_path / name) for name in ("a", "b")]
    for store in stores:
        local_chain(store)
    barrier = threading.Barrier(2)

    def push(store: Store) -> None:
        pusher = shared.remote(store)
        barrier.wait()
        for stage, key in (("volume", VOL), ("os", OSK), ("packages", PKG)):
            pusher.push(stage, key)

    threads = [threading.Thread(target=push, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    if shared.s3 is None:
        assert not [n for n in shared.names() if "/." in f"/{n}"], "a temporary object was left visible"
    third = shared.remote(Store(tmp_path / "c"))
    valid, junk = remote_manage.scan(third)
    assert junk == [] and valid
    for record, _ in valid:  # every link holds: a child names its remote parent's very bytes
        if record.parent_stage:
            parent = third.lookup(record.parent_stage, record.parent or "")
            assert parent is not None and parent.record.digest == record.record.parent_digest
    third.store.ensure()
    assert third.pull("volume", VOL, None, held=False)
    assert third.warnings == []


def create_at_once(backend, name: str, bodies: list[bytes]) -> tuple[list[bytes], list[Exception]]:
    """Each body's writer creates `name` at the same instant: the bodies that won, the errors."""
    won: list[bytes] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(len(bodies))

    def create(body: bytes) -> None:
        barrier.wait()
        try:
            if backend.create(name, body):
                won.append(body)
        except Exception as exc:  # any failure at all is what the caller looks for
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return won, errors


def test_two_writers_of_one_name_at_one_instant_leave_one_of_them_whole(tmp_path, shared):
    """What the race above relies on, at the backend: two writers in one process (one pid, one
    start time, as two identical CI containers may also share) creating one object at the same
    moment. Neither fails, exactly one wins, and the object is that one's bytes, whole."""
    backend = shared.remote(Store(tmp_path / "a")).objects
    bodies = [bytes([ord("A") + n]) * 300_000 for n in range(2)]
    for attempt in range(20):
        name = f"records/race-{attempt}.json"
        won, errors = create_at_once(backend, name, bodies)
        assert errors == [] and len(won) == 1
        assert shared.get(name) == won[0]


def test_a_fifo_planted_in_a_shared_folder_is_a_miss_not_a_hang(tmp_path):
    folder = tmp_path / "team-cache"
    (folder / "records").mkdir(parents=True)
    os.mkfifo(folder / "records" / f"volume-{VOL}.json")
    store = Store(tmp_path / "b")
    store.ensure()
    remote = Remote(RemoteConfig(str(folder)), store)
    assert remote.lookup("volume", VOL) is None
    assert remote.warnings and "not a regular file" in remote.warnings[0]


def test_a_shared_folder_that_is_not_there_is_one_warning_then_left_alone(tmp_path):
    store = Store(tmp_path / "b")
    store.ensure()
    remote = Remote(RemoteConfig(f"file://{tmp_path}/not-mounted"), store)
    assert remote.lookup("volume", VOL) is None and remote.lookup("os", OSK) is None
    assert any("not answering" in w for w in remote.warnings)
    assert len(remote.warnings) == 2  # the first failure, and that it is left alone


@pytest.mark.parametrize("url", ["relative/folder", "file://otherhost/x", "file:relative", "s3://"])
def test_a_remote_url_that_is_neither_a_bucket_nor_an_absolute_folder_is_refused(url):
    with pytest.raises(VzError, match="expected s3://BUCKET"):
        remote_config(url)


def test_a_record_pushed_while_another_host_pushes_it_never_replaces_the_first(tmp_path, shared):
    """The interleaving the race above can hit: host A has checked that the remote lacks its
    volume, host B then pushes its whole chain, and A's record write comes last. A's write is
    refused, so B's os still names the remote's very volume."""
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    local_chain(a)
    local_chain(b)
    first, late = shared.remote(b), shared.remote(a)
    for stage, key in (("volume", VOL), ("os", OSK)):
        assert first.push(stage, key)
    local = a.lookup("volume", VOL, disk=True)
    assert local is not None
    assert late._push_one(local, replace=False) is False  # its check passed before B pushed
    remote_volume = shared.remote(Store(tmp_path / "c")).lookup("volume", VOL)
    b_volume = b.lookup("volume", VOL, disk=True)
    assert remote_volume is not None and b_volume is not None
    assert remote_volume.record.digest == b_volume.digest
    assert remote_volume.record.digest != local.digest
    backend = first.objects
    assert backend.create("archive/probe.json", b"one") is True
    assert backend.create("archive/probe.json", b"two") is False
    assert shared.get("archive/probe.json") == b"one"


def test_remote_gc_sweeps_what_killed_pushers_left_half_written(tmp_path, shared):
    """A pusher killed mid-upload leaves a partial file in a shared folder, or an unfinished
    multipart upload in S3 (its parts stored, and billed, for good). gc removes those older than
    its orphan age, and leaves a push that may still be running."""
    pushed(tmp_path, shared)
    old, fresh_time = time.time() - 2 * remote_manage.ORPHAN_AGE, time.time()
    if shared.s3 is None:
        abandoned = Path(shared.url) / "blobs" / f".{'a' * 64}.123-456.partial"
        running = Path(shared.url) / "blobs" / f".{'b' * 64}.789-012.partial"
        for path, when in ((abandoned, old), (running, fresh_time)):
            path.write_bytes(b"half")
            os.utime(path, (when, when))
        remote_manage.collect(shared.remote(Store(tmp_path / "c")), max_size=None, max_age=None)
        assert not abandoned.exists() and running.exists()
        return
    started = shared.s3.create_multipart_upload(Bucket=shared.bucket, Key="team/blobs/" + "a" * 64)
    backend = shared.remote(Store(tmp_path / "c")).objects
    # moto dates every upload 2010-11-10, so only the shared folder's case above tests the age.
    assert backend.sweep(older_than=3600) == 1
    uploads = shared.s3.list_multipart_uploads(Bucket=shared.bucket).get("Uploads", [])
    assert started["UploadId"] not in [u["UploadId"] for u in uploads]
