"""Records and other JSON from elsewhere are measured before they are parsed."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vzstages.cache.record import fresh_sha256, json_depth, load_json, sha256_while_flushing

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab\n'),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\a'), inner, max_size=3)
    ),
    max_leaves=30,
)


def depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@given(JSON)
def test_the_measured_depth_is_the_true_depth_whatever_the_strings_hold(value):
    assert json_depth(json.dumps(value)) == depth(value)


@pytest.mark.parametrize(
    "text",
    ['"' + "[" * 100, "[" * 100_000, '["\\"' + "[" * 100, '{"a": "x"}' + "{" * 40],
)
def test_a_nesting_bomb_is_refused_before_parsing(text):
    with pytest.raises(ValueError):
        load_json(text)


def test_a_digest_taken_while_flushing_is_reused_only_for_the_same_file(tmp_path):
    image = tmp_path / "image.qcow2"
    image.write_bytes(b"image bytes " * 100_000)
    expected = hashlib.sha256(image.read_bytes()).hexdigest()
    assert sha256_while_flushing(image) == expected
    renamed = tmp_path / "final.qcow2"
    image.rename(renamed)  # publishing renames it: the same file still
    assert fresh_sha256(renamed) == expected
    # Rewritten in place with other bytes of the same size: a new mtime, so hashed again.
    time.sleep(0.01)
    renamed.write_bytes(b"other bytes " * 100_000)
    assert fresh_sha256(renamed) == hashlib.sha256(renamed.read_bytes()).hexdigest() != expected
