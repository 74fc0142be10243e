"""Records and other JSON from elsewhere are measured before they are parsed."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vzstages.cache.record import json_depth, load_json

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
