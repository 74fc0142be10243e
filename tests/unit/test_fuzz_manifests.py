"""Any input, however broken, gets a clear error or a plan: never a traceback, never a hang.

A corpus of hostile files, then property-based fuzzing: documents mutated from a valid manifest
at random paths, documents generated from the merged schema itself, and random bytes. Each must
load and compile, or fail with a ManifestError/VzError; nothing else may escape.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vzstages.cache.store import Store
from vzstages.compiler.plan import compile_plan
from vzstages.errors import ManifestError, VzError
from vzstages.manifest import load_manifest

from ..conftest import KVM_MANIFEST, REPO, TEST_KEY

BASE = yaml.safe_load(KVM_MANIFEST)
FUZZ = settings(
    max_examples=int(os.environ.get("VZSTAGES_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def outcome(path: Path) -> str:
    """'ok' or the first problem; anything but a ManifestError/VzError fails the test."""
    started = time.monotonic()
    try:
        manifest = load_manifest(path)
        compile_plan(manifest, Store(path.parent / "cache"), secret_key=TEST_KEY)
        return "ok"
    except ManifestError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        return exc.problems[0]
    except VzError as exc:
        return str(exc)
    finally:
        assert time.monotonic() - started < 10, "loading took too long"


def write(tmp_path: Path, content: bytes | str, name: str = "m.yml") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)

CORPUS: dict[str, bytes | str] = {
    "not utf-8": b"name: caf\xe9\n",
    "a NUL byte": KVM_MANIFEST.replace("hostname: alpha", "hostname: al\0pha"),
    "nested 3000 deep": "a: " + "[" * 3000 + "]" * 3000 + "\n",
    "nested mappings 200 deep": "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v: 1\n",
    "an integer of 5000 digits": KVM_MANIFEST.replace("hostname: alpha", "hostname: " + "9" * 5000),
    "an alias bomb": ALIAS_BOMB,
    "duplicate keys": KVM_MANIFEST.replace("  hostname: alpha\n", "  hostname: alpha\n  hostname: beta\n"),
    "a list": "- a\n- b\n",
    "empty": "",
    "a tab-indented mess": "name:\tx\n\tprovider: [\n",
    "utf-16 with a BOM": b"\xff\xfe" + KVM_MANIFEST.encode("utf-16-le"),
    "a python tag": "name: !!python/object/apply:os.system [true]\n",
    "a complex key": "? [a, b]\n: c\n",
    "a name with a slash": KVM_MANIFEST.replace("name: test-", "name: ../../etc/test-"),
    "a name with a newline": KVM_MANIFEST.replace("name: test-", 'name: "te\\nst-'),
    "a name of 5000 characters": KVM_MANIFEST.replace("name: test-", "name: " + "n" * 5000),
    "a hostname with a trailing newline": KVM_MANIFEST.replace("hostname: alpha", 'hostname: "alpha\\n"'),
    "a hostname of 300 characters": KVM_MANIFEST.replace("hostname: alpha", "hostname: " + "a" * 300),
    "a 99999999999999TiB root": KVM_MANIFEST.replace("size: 1GiB", "size: 99999999999999TiB"),
    "a 3TiB root on msdos": KVM_MANIFEST.replace("size: 1GiB", "size: 3TiB").replace(
        "type: gpt", "type: msdos"
    ),
    "an unknown field in a source": KVM_MANIFEST.replace(
        "packages:\n", "packages:\n  sources:\n    x: ['deb http://h/debian {unknown} main']\n"
    ),
    "a preference named ..": KVM_MANIFEST.replace(
        "packages:\n", "packages:\n  preferences:\n    '..': [{package: a, pin: b, pin-priority: 1}]\n"
    ),
    "a float port": KVM_MANIFEST + "plugins:\n  apt_proxy: {address: proxy, port: 3128.0}\n",
    "an empty command": KVM_MANIFEST + "plugins:\n  commands:\n    commands: [['', x]]\n",
    "a secret in the name": KVM_MANIFEST.replace("name: test-", "name: img-{plugins.root_password.password}-")
    + "plugins:\n  root_password: {password: hunter2-secret}\n",
    "a date field that is not one": KVM_MANIFEST.replace("{%Y}", "{%Q%}"),
}

MUST_FAIL = set(CORPUS) - {"utf-16 with a BOM"}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_corpus(tmp_path, name):
    result = outcome(write(tmp_path, CORPUS[name]))
    assert (result != "ok") == (name in MUST_FAIL), result
    assert "hunter2-secret" not in result


@pytest.mark.parametrize("special", ["/dev/null", "/dev/zero", "fifo", "folder"])
def test_special_files_are_refused_at_once(tmp_path, special):
    path = Path(special)
    if special == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    elif special == "folder":
        path = tmp_path
    with pytest.raises(ManifestError, match=r"regular file|cannot read"):
        load_manifest(path)


def test_a_huge_file_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "huge.yml"
    with open(path, "wb") as f:
        f.truncate(3 << 30)  # sparse: 3 GiB that cost nothing
    with pytest.raises(ManifestError, match="larger than"):
        load_manifest(path)


@pytest.mark.parametrize("what", ["fifo", "device", "huge"])
def test_special_or_huge_input_files_are_refused(tmp_path, write_manifest, what):
    if what == "fifo":
        os.mkfifo(tmp_path / "key.pub")
        source = "key.pub"
    elif what == "device":
        source = "/dev/zero"
    else:
        with open(tmp_path / "key.pub", "wb") as f:
            f.write(b"ssh-ed25519 AAAA")
            f.truncate(3 << 30)
        source = "key.pub"
    path = write_manifest(KVM_MANIFEST + f"plugins:\n  admin_user: {{username: ops, pubkey: {source}}}\n")
    result = outcome(path)
    assert result != "ok" and "pubkey" in result


def test_non_utf8_names_in_a_copied_folder_are_hashed(tmp_path, write_manifest):
    folder = tmp_path / "tree"
    folder.mkdir()
    (folder / os.fsdecode(b"caf\xe9")).write_text("x")
    path = write_manifest(
        KVM_MANIFEST + "plugins:\n  file_copy:\n    files:\n      - {src: tree, dst: /opt/tree}\n"
    )
    assert outcome(path) == "ok"


# --- property-based --------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        ["", "\n", "x\n", "../..", "{system.release}", "{nope}", "{%Y}", "1GiB", "0B", "/", "\0"]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


PLUGIN_SETTINGS = {
    "admin_user": {"username": "ops", "password": "pw-secret"},
    "root_password": {"password": "pw-secret"},
    "file_copy": {"files": [{"src": ".", "dst": "/opt/x"}]},
    "commands": {"commands": [["true"]]},
    "minimize_size": {"dpkg": {"exclude_docs": True}, "shrink": True},
    "ntp": {"servers": ["time.example.org"]},
    "unattended_upgrades": {"update_interval": 1, "download_interval": 1, "upgrade_interval": 1},
    "apt_proxy": {"address": "proxy", "port": 3128, "username": "u", "password": "pw-secret"},
    "pip_install": {"packages": ["requests"]},
    "debconf": "d-i debian-installer/locale string en_US\n",
    "expand_root": {},
    "cloud_init": {"username": "admin"},
}


@st.composite
def mutated(draw: st.DrawFn) -> dict:
    doc = copy.deepcopy(BASE)
    if draw(st.booleans()):
        chosen = draw(st.lists(st.sampled_from(sorted(PLUGIN_SETTINGS)), max_size=3, unique=True))
        doc["plugins"] = {name: copy.deepcopy(PLUGIN_SETTINGS[name]) for name in chosen}
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        where = draw(st.sampled_from(paths(doc)))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        parent: Any = doc
        for part in where[:-1]:
            parent = parent[part]
        if not where:
            continue
        if action == "delete":
            del parent[where[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(VALUES)
        else:
            parent[where[-1]] = draw(VALUES)
    return doc


def dump(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc, allow_unicode=True)
    except yaml.YAMLError:
        return json.dumps(doc, default=str)


@FUZZ
@given(doc=mutated())
def test_mutated_manifests_never_crash(tmp_path_factory, doc):
    outcome(write(tmp_path_factory.mktemp("m"), dump(doc)))


@FUZZ
@given(data=st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_random_bytes_never_crash(tmp_path_factory, data):
    outcome(write(tmp_path_factory.mktemp("b"), data))


@FUZZ
@given(cut=st.integers(min_value=0, max_value=len(KVM_MANIFEST)), junk=st.text(max_size=20))
def test_truncated_and_spliced_manifests_never_crash(tmp_path_factory, cut, junk):
    outcome(write(tmp_path_factory.mktemp("t"), KVM_MANIFEST[:cut] + junk + KVM_MANIFEST[cut:]))


def test_validate_checks_every_file_even_after_a_broken_one(tmp_path):
    good = write(tmp_path, KVM_MANIFEST, "a.yml")
    bad = write(tmp_path, CORPUS["an alias bomb"], "bad.yml")
    binary = write(tmp_path, b"\xff\x00\x13", "junk.yml")
    last = write(tmp_path, KVM_MANIFEST, "c.yml")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vzstages",
            "--cache",
            str(tmp_path / "cache"),
            "validate",
            str(good),
            str(bad),
            str(binary),
            str(last),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr + out.stdout and "internal error" not in out.stderr
    assert f"{good}: valid" in out.stdout and f"{last}: valid" in out.stdout
    assert f"{bad}: invalid" in out.stdout and f"{binary}: invalid" in out.stdout
