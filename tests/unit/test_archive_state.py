"""The archive refresh policy, against a real HTTP mirror on loopback."""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import pytest

from vzstages.cache.archive_state import ArchiveState
from vzstages.cache.store import Store
from vzstages.compiler.plan import compile_plan
from vzstages.manifest import load_manifest

from ..conftest import KVM_MANIFEST


@pytest.fixture
def mirror(tmp_path):
    """A tiny Debian-shaped mirror: dists/<suite>/InRelease for bookworm and its companions."""
    root = tmp_path / "mirror"
    for suite in ("bookworm", "bookworm-updates"):
        (root / "debian/dists" / suite).mkdir(parents=True)
        (root / "debian/dists" / suite / "InRelease").write_text(f"Suite: {suite}\nDate: day one\n")
    (root / "debian-security/dists/bookworm-security").mkdir(parents=True)
    (root / "debian-security/dists/bookworm-security/InRelease").write_text("Suite: bookworm-security\n")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/debian", server
    server.shutdown()


def manifest_for(write_manifest, url: str):
    return load_manifest(write_manifest(KVM_MANIFEST + f"bootstrapper:\n  mirror: {url}\n"))


def test_state_is_reused_within_the_policy_and_refetched_after(tmp_path, mirror, write_manifest):
    root, url, _ = mirror
    manifest = manifest_for(write_manifest, url)
    state = ArchiveState(tmp_path / "archive", max_age=3600)
    first = state.suites(manifest, ["", "-updates", "-security"])
    assert set(first) == {"bookworm", "bookworm-updates", "bookworm-security"}

    (root / "debian/dists/bookworm/InRelease").write_text("Suite: bookworm\nDate: day two\n")
    assert ArchiveState(tmp_path / "archive", max_age=3600).suites(manifest, [""]) == {
        "bookworm": first["bookworm"]
    }
    refreshed = ArchiveState(tmp_path / "archive", max_age=3600, refresh=True).suites(manifest, [""])
    assert refreshed["bookworm"] != first["bookworm"]
    time.sleep(0.05)
    expired = ArchiveState(tmp_path / "archive", max_age=0.01).suites(manifest, ["", "-updates"])
    assert expired["bookworm"] == refreshed["bookworm"]
    assert expired["bookworm-updates"] == first["bookworm-updates"]


def test_offline_uses_the_last_known_state_with_a_warning(tmp_path, mirror, write_manifest):
    _, url, server = mirror
    manifest = manifest_for(write_manifest, url)
    known = ArchiveState(tmp_path / "archive").suites(manifest, [""])
    server.shutdown()
    server.server_close()
    offline = ArchiveState(tmp_path / "archive", refresh=True)
    assert offline.suites(manifest, [""]) == known
    assert "archive unreachable" in offline.warnings[0]


def test_archive_change_rebuilds_only_downloading_stages_and_after(tmp_path, mirror, write_manifest):
    root, url, _ = mirror
    manifest = manifest_for(write_manifest, url)
    store = Store(tmp_path / "cache")
    before = compile_plan(manifest, store, ArchiveState(store.root / "archive").suites)
    (root / "debian-security/dists/bookworm-security/InRelease").write_text("Suite: bookworm-security\nnew\n")
    after = compile_plan(manifest, store, ArchiveState(store.root / "archive", refresh=True).suites)
    changed = [a.name for a, b in zip(before.stages, after.stages, strict=True) if a.key != b.key]
    # debootstrap reads only the release; the security suite first matters to the packages stage
    assert changed == ["packages", "system", "cleanup", "image"]
    assert (
        after.stage("packages").inputs["archive"]["bookworm-security"]
        != before.stage("packages").inputs["archive"]["bookworm-security"]
    )


def test_missing_release_is_a_clear_error(tmp_path, mirror, write_manifest):
    from vzstages.common.archive import fetch_release
    from vzstages.errors import VzError

    _, url, _ = mirror
    with pytest.raises(VzError, match=r"does not carry release 'stretch'.*archive mirror"):
        fetch_release(url, "stretch")
    assert Path(tmp_path).exists()


def test_hosts_sharing_a_remote_cache_share_the_archive_state(
    tmp_path, mirror, write_manifest, moto_endpoint, monkeypatch
):
    """A host takes the newest state another host published (within the policy), so that both
    compute the same keys; a refresh anywhere moves the team on; a state beyond the policy, or
    one that is not a state, is not taken."""
    import boto3

    from vzstages.cache.remote import Remote
    from vzstages.cache.remote_config import RemoteConfig

    for name, value in (
        ("AWS_ACCESS_KEY_ID", "t"),
        ("AWS_SECRET_ACCESS_KEY", "t"),
        ("AWS_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint)
    s3.create_bucket(Bucket="team-cache")
    root, url, _ = mirror
    manifest = manifest_for(write_manifest, url)

    def host(name: str, refresh: bool = False) -> ArchiveState:
        store = Store(tmp_path / name)
        shared = Remote(RemoteConfig("s3://team-cache/ci", endpoint_url=moto_endpoint), store)
        return ArchiveState(store.root / "archive", max_age=3600, refresh=refresh, shared=shared)

    first = host("a").suites(manifest, ["", "-updates"])
    (root / "debian/dists/bookworm/InRelease").write_text("Suite: bookworm\nDate: day two\n")
    assert host("b").suites(manifest, ["", "-updates"]) == first  # not the archive's newer state

    refreshed = host("b", refresh=True).suites(manifest, [""])
    assert refreshed["bookworm"] != first["bookworm"]
    assert host("a").suites(manifest, [""]) == refreshed  # a's own state was fresh, but older

    states = [o["Key"] for o in s3.list_objects_v2(Bucket="team-cache", Prefix="ci/archive/")["Contents"]]
    for key in states:
        document = json.loads(s3.get_object(Bucket="team-cache", Key=key)["Body"].read())
        document["fetched"] -= 7200  # beyond the policy
        s3.put_object(Bucket="team-cache", Key=key, Body=json.dumps(document).encode())
    (root / "debian/dists/bookworm/InRelease").write_text("Suite: bookworm\nDate: day three\n")
    third = host("c").suites(manifest, [""])
    assert third["bookworm"] not in (first["bookworm"], refreshed["bookworm"])

    for key in states:
        s3.put_object(Bucket="team-cache", Key=key, Body=b'{"format": 2, "url": 3, "digest": "../.."}')
    lonely = host("d")
    assert lonely.suites(manifest, [""]) == third
    assert any("malformed" in w for w in lonely.shared.warnings)  # type: ignore[union-attr]


def test_a_state_dated_in_the_future_or_nested_deep_is_fetched_again(tmp_path, write_manifest, mirror):
    """A planted state cannot pin a suite for a day: it is ignored with a warning."""
    import time

    _, url, _ = mirror
    manifest = manifest_for(write_manifest, url)
    state = ArchiveState(tmp_path / "archive", max_age=3600)
    first = state.suites(manifest, [""])
    [path] = (tmp_path / "archive").glob("*.json")
    for planted in (
        json.dumps({"url": "x", "fetched": time.time() + 86400, "digest": "0" * 32}),
        "[" * 50_000,
    ):
        path.write_text(planted)
        again = ArchiveState(tmp_path / "archive", max_age=3600)
        assert again.suites(manifest, [""]) == first
        assert again.warnings, planted[:20]
