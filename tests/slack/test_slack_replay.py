"""The replay cache: a verified request counts once for as long as it could verify again."""

from __future__ import annotations

from zdp.slack.replay import WINDOW_SECONDS, ReplayCache


def test_a_key_counts_once_until_it_expires() -> None:
    cache = ReplayCache()
    key, now = ("1700000000", "v0=abc"), 1_700_000_000.0
    expires = 1_700_000_000 + WINDOW_SECONDS + 1
    assert cache.first_sighting(key, expires, now)
    assert not cache.first_sighting(key, expires, now + WINDOW_SECONDS)
    assert cache.first_sighting(key, expires, expires + 1)  # it could not verify any more


def test_a_timestamp_ahead_of_the_clock_is_remembered_until_it_leaves_the_window() -> None:
    cache = ReplayCache()
    now = 1_700_000_000.0
    ahead = int(now) + 290  # still verifies now, and for 590 s more
    key = (str(ahead), "v0=def")
    assert cache.first_sighting(key, ahead + WINDOW_SECONDS + 1, now)
    assert not cache.first_sighting(key, ahead + WINDOW_SECONDS + 1, now + 2 * WINDOW_SECONDS - 20)


def test_memory_is_bounded_and_expired_entries_are_dropped() -> None:
    cache = ReplayCache(max_entries=3)
    for i in range(5):
        assert cache.first_sighting((str(i), "sig"), 100.0 + i, now=0.0)
    assert len(cache) == 3
    assert cache.first_sighting(("0", "sig"), 100.0, now=0.0)  # the oldest went first
    cache.first_sighting(("x", "sig"), 500.0, now=103.5)
    assert len(cache) == 2  # 0..3 expired at 103.5; "4" (104) and "x" remain
