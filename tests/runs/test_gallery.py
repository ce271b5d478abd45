"""The bounded per-case choice of what to show, against sorting everything."""

from __future__ import annotations

import random

import pytest

from ov_explain.runs.gallery import Gallery


@pytest.mark.parametrize("limit", [0, 1, 3, 50])
def test_each_case_keeps_its_smallest_keys_first_come_first_on_ties(limit):
    rng = random.Random(limit)
    members = [(rng.choice("abc"), rng.randint(0, 9), n) for n in range(300)]  # many ties on the key
    gallery = Gallery(limit, key=lambda m: m[1])
    for member in members:
        gallery.add(member[0], member)
    for case in "abc":
        expected = sorted((m for m in members if m[0] == case), key=lambda m: (m[1], m[2]))[:limit]
        assert gallery.members(case) == expected
        assert gallery.counts[case] == sum(m[0] == case for m in members)
    assert gallery.members("z") == [] and gallery.counts["z"] == 0
    with pytest.raises(ValueError, match="limit: expected >= 0"):
        Gallery(-1, key=lambda m: m)
