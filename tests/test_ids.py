"""Run and event ids: version-7 UUIDs that sort in the order they were made (hotapp/ids.py)."""

import time
import uuid
from types import SimpleNamespace

from hotapp import ids
from hotapp.ids import uuid7


def test_ids_made_one_after_another_sort_in_the_order_they_were_made():
    made = [uuid7() for _ in range(10_000)]  # many within one millisecond

    assert made == sorted(made) and len(set(made)) == len(made)
    assert {(i.version, i.variant) for i in made} == {(7, uuid.RFC_4122)}


def test_an_id_starts_with_the_millisecond_it_was_made_in():
    before = time.time_ns() // 1_000_000
    made = uuid7()
    after = time.time_ns() // 1_000_000

    assert before <= made.int >> 80 <= after


def test_ids_keep_increasing_when_the_clock_stands_still_or_steps_back(monkeypatch):
    now_ns = [time.time_ns() + 10**12]  # ahead of any id this process made
    monkeypatch.setattr(ids, "time", SimpleNamespace(time_ns=lambda: now_ns[0]))
    # Put back afterwards: the ids the rest of the suite makes carry the real time.
    monkeypatch.setattr(ids, "_last_ms", ids._last_ms)
    monkeypatch.setattr(ids, "_counter", ids._counter)

    made = [uuid7() for _ in range(5000)]  # past the 12-bit counter of one millisecond
    now_ns[0] -= 5 * 10**9  # NTP steps the clock five seconds back
    made += [uuid7() for _ in range(10)]

    assert made == sorted(made) and len(set(made)) == len(made)
