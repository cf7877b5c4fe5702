"""The offset gate: a partition's records reach the agent once each, in offset order, whatever happens on the way."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.offset_gate import ANY, OffsetGate, Verdict

TP = ("ticks", 1)


def test_nothing_passes_before_the_seek_and_the_seek_sets_the_start() -> None:
    gate = OffsetGate()
    assert gate.admit(TP, 4569, gate.epoch, 0.0) is Verdict.SKIP  # resumed before Faust's seek (the lost-ticks race)
    gate.sought({TP: 3600}, 0.0)
    assert gate.admit(TP, 3600, gate.epoch, 0.0) is Verdict.DELIVER
    assert gate.admit(TP, 3601, gate.epoch, 0.0) is Verdict.DELIVER
    assert gate.admit(TP, 3600, gate.epoch, 0.0) is Verdict.SKIP  # a stale duplicate
    assert gate.expected(TP) == 3602


def test_a_gap_reseeks_and_only_a_later_fetch_confirms_it() -> None:
    gate = OffsetGate()
    gate.sought({TP: 4844}, 0.0)
    stale = gate.epoch
    assert gate.admit(TP, 4845, stale, 0.0) is Verdict.RESEEK  # what the join/leave test's agent was handed
    assert gate.reseeking(TP, 0.0) == 4844
    assert gate.stale(TP, stale) and not gate.stale(TP, gate.epoch)  # the consumer drops the old fetch's rest
    assert gate.admit(TP, 4846, stale, 0.0) is Verdict.SKIP  # what was past the consumer already
    assert gate.admit(TP, 4844, gate.epoch, 0.0) is Verdict.DELIVER  # the re-fetch starts at the expected offset
    assert gate.reseeks == 1 and gate.accepted_gaps == 0


def test_a_real_hole_is_accepted_once_fetched_again() -> None:
    gate = OffsetGate()
    gate.sought({TP: 10}, 0.0)
    assert gate.admit(TP, 12, gate.epoch, 0.0) is Verdict.RESEEK  # 11 is a transaction marker, say
    gate.reseeking(TP, 0.0)
    assert gate.admit(TP, 12, gate.epoch, 0.0) is Verdict.RESEEK  # unknown yet: 11 may have been lost again
    gate.reseeking(TP, 0.0)
    gate.fetched(TP, 12, gate.epoch)  # the fetch from 11 began at 12
    gate.fetched(TP, 13, gate.epoch)
    assert gate.admit(TP, 12, gate.epoch, 0.0) is Verdict.DELIVER
    assert gate.accepted_gaps == 1 and gate.expected(TP) == 13


def test_a_record_fetched_after_the_reseek_and_lost_again_is_not_taken_for_a_hole() -> None:
    gate = OffsetGate()
    gate.sought({TP: 4844}, 0.0)
    assert gate.admit(TP, 4845, gate.epoch, 0.0) is Verdict.RESEEK
    gate.reseeking(TP, 0.0)
    gate.fetched(TP, 4844, gate.epoch)  # it exists ...
    assert gate.admit(TP, 4845, gate.epoch, 0.0) is Verdict.RESEEK  # ... and was lost on the way again
    assert gate.expected(TP) == 4844 and gate.accepted_gaps == 0


def test_a_position_past_unadmitted_records_is_sought_back_after_the_stall_time() -> None:
    gate = OffsetGate(stall_s=10.0)
    gate.sought({TP: 100}, 0.0)
    assert gate.admit(TP, 100, gate.epoch, 1.0) is Verdict.DELIVER
    assert not gate.check_position(TP, 101, 50.0)  # in step
    assert not gate.check_position(TP, 140, 5.0)  # 101..139 may still be on their way to the agent
    assert gate.check_position(TP, 140, 11.0)  # nothing admitted for 10 s: lost on the way
    assert gate.reseeking(TP, 11.0) == 101
    assert not gate.check_position(TP, 140, 12.0)  # the re-seek gets its own stall time
    assert gate.admit(TP, 101, gate.epoch, 12.5) is Verdict.DELIVER
    gate2 = OffsetGate(stall_s=10.0)
    gate2.sought({TP: 7}, 0.0)
    assert gate2.check_position(TP, 8, 10.0)  # 7 is a transaction marker at the end
    gate2.reseeking(TP, 10.0)
    assert not gate2.check_position(TP, 8, 20.0)  # still ahead a stall time after the re-seek: a real hole
    assert gate2.expected(TP) == 8 and gate2.accepted_gaps == 1


def test_no_committed_offset_takes_the_first_record_and_revoke_closes_the_gate() -> None:
    gate = OffsetGate()
    gate.sought({TP: None}, 0.0)
    assert gate.expected(TP) == ANY
    assert gate.admit(TP, 500, gate.epoch, 0.0) is Verdict.DELIVER
    assert gate.admit(TP, 502, gate.epoch, 0.0) is Verdict.RESEEK
    gate.forget([TP])
    assert gate.admit(TP, 501, gate.epoch, 0.0) is Verdict.SKIP


@st.composite
def fetch_histories(draw: st.DrawFn) -> tuple[int, int, list[tuple[str, int]]]:
    """A partition of ``end`` offsets with holes, committed at ``start``, and a schedule of events."""
    end = draw(st.integers(5, 60))
    start = draw(st.integers(0, end - 1))
    kinds = st.sampled_from(["fetch", "fetch", "stale", "lose", "lose_all", "rebalance"])
    actions = draw(st.lists(st.tuples(kinds, st.integers(0, end)), min_size=1, max_size=80))
    return start, end, actions


@settings(max_examples=400, deadline=None)
@given(history=fetch_histories(), holes=st.sets(st.integers(0, 60), max_size=5), batch=st.integers(1, 6))
def test_what_the_gate_admits_never_skips_a_record(history: tuple[int, int, list[tuple[str, int]]],
                                                   holes: set[int], batch: int) -> None:
    """A model of Faust over aiokafka: a position, batches from it, and the failures seen in the fault test.

    ``stale``: a batch fetched earlier, from anywhere, handed out now. ``lose``: the first records of a
    fetched batch never reach the agent; ``lose_all``: none of them do (a loss at the tail). ``rebalance``:
    the position moves anywhere, then Faust's seek to a committed offset (never past what was admitted).
    Holes are offsets with no record (transaction markers). One time unit passes per event. The state's
    redelivery check needs exactly this: every admitted offset beyond the highest so far is the *next*
    record, and in the end every record was admitted.
    """
    start, end, actions = history
    records = [o for o in range(start, end) if o not in holes]
    after = {a: b for a, b in zip(records, records[1:], strict=False)}
    gate = OffsetGate(stall_s=3.0)
    clock = 0.0
    gate.sought({TP: start}, clock)
    position, admitted = start, []

    def hand(offsets: list[int], epoch: int) -> None:
        nonlocal position
        for offset in offsets:
            verdict = gate.admit(TP, offset, epoch, clock)
            if verdict is Verdict.DELIVER:
                admitted.append(offset)
            elif verdict is Verdict.RESEEK:
                position = gate.reseeking(TP, clock)
                return

    def fetch_from_position(lose: int = 0) -> None:
        nonlocal position, clock
        clock += 1.0
        epoch, frm = gate.epoch, position
        got = [o for o in records if o >= frm][:batch]
        position = got[-1] + 1 if got else frm  # the consumer moves past what it returns
        for offset in got:
            gate.fetched(TP, offset, epoch)
        hand(got[lose:], epoch)
        if gate.check_position(TP, position, clock):
            position = gate.reseeking(TP, clock)

    for kind, at in actions:
        if kind == "fetch":
            fetch_from_position()
        elif kind == "lose":
            fetch_from_position(lose=1 + at % batch)
        elif kind == "lose_all":
            fetch_from_position(lose=batch)
        elif kind == "stale":
            clock += 1.0
            hand([o for o in records if o >= at][:batch], gate.epoch - 1)
        else:
            high = max(admitted, default=start - 1)
            committed = min(at, high + 1) if admitted else start
            gate.sought({TP: committed}, clock)
            position = committed
    for _ in range(4 * (len(records) + 2)):
        fetch_from_position()

    high = None
    for offset in admitted:
        if high is None:
            assert offset == records[0]
        elif offset > high:
            assert offset == after[high], f"{offset} admitted after {high}: a record was skipped"
        high = offset if high is None else max(high, offset)
    assert high == (records[-1] if records else None)


def test_the_gate_counters_are_scraped_from_the_metrics_registry() -> None:
    from prometheus_client import generate_latest

    from app.metrics import Metrics

    holder: dict[str, OffsetGate] = {}
    metrics = Metrics.create(offset_gate=lambda: holder.get("gate"))
    assert b"offset_gate" not in generate_latest(metrics.registry)  # no consumer yet: no series
    gate = holder["gate"] = OffsetGate()
    gate.sought({TP: 10}, 0.0)
    assert gate.admit(TP, 9, gate.epoch, 0.0) is Verdict.SKIP
    assert gate.admit(TP, 12, gate.epoch, 0.0) is Verdict.RESEEK
    text = generate_latest(metrics.registry).decode()
    assert "cryptotrace_offset_gate_skipped_total 1.0" in text
    assert "cryptotrace_offset_gate_reseeks_total 1.0" in text
    assert "cryptotrace_offset_gate_accepted_gaps_total 0.0" in text
