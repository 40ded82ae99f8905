"""Rendezvous hashing: every member computes the same owner; a change moves the least."""

from __future__ import annotations

from collections import Counter

from daemon.fleet import LocalFleet, owner

IDS = [f"sched-{i:032x}" for i in range(3000)]


def test_the_owner_is_a_member_and_does_not_depend_on_their_order() -> None:
    members = ["a:1", "b:2", "c:3"]
    for schedule_id in IDS[:200]:
        picked = owner(schedule_id, members)
        assert picked in members
        assert owner(schedule_id, list(reversed(members))) == picked


def test_the_share_is_spread_evenly() -> None:
    counts = Counter(owner(schedule_id, ["a", "b", "c"]) for schedule_id in IDS)
    assert set(counts) == {"a", "b", "c"}
    assert all(800 <= count <= 1200 for count in counts.values()), counts


def test_a_member_leaving_moves_only_its_own_schedules() -> None:
    before = {sid: owner(sid, ["a", "b", "c"]) for sid in IDS}
    after = {sid: owner(sid, ["a", "c"]) for sid in IDS}
    moved = {sid for sid in IDS if before[sid] != after[sid]}
    assert moved == {sid for sid in IDS if before[sid] == "b"}


def test_a_member_joining_takes_schedules_only_for_itself() -> None:
    before = {sid: owner(sid, ["a", "b"]) for sid in IDS}
    after = {sid: owner(sid, ["a", "b", "d"]) for sid in IDS}
    assert all(after[sid] in (before[sid], "d") for sid in IDS)
    assert 700 <= sum(1 for sid in IDS if after[sid] == "d") <= 1300


def test_a_lone_daemon_owns_everything() -> None:
    alone = LocalFleet()
    assert all(alone.owns(sid) for sid in IDS[:50])
    described = alone.describe()
    assert described["members"] == [alone.member_id] == [described["member"]]
