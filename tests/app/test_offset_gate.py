"""The offset gate: a partition's records reach the agent once each, in offset order, whatever the fetches do."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.offset_gate import ANY, OffsetGate, Verdict

TP = ("ticks", 1)


def test_nothing_passes_before_the_seek_and_the_seek_sets_the_start() -> None:
    gate = OffsetGate()
    assert gate.admit(TP, 4569, gate.epoch) is Verdict.SKIP  # resumed before Faust's seek (the lost-ticks race)
    gate.sought({TP: 3600})
    assert gate.admit(TP, 3600, gate.epoch) is Verdict.DELIVER
    assert gate.admit(TP, 3601, gate.epoch) is Verdict.DELIVER
    assert gate.admit(TP, 3600, gate.epoch) is Verdict.SKIP  # a stale duplicate
    assert gate.expected(TP) == 3602


def test_a_gap_reseeks_and_only_a_later_fetch_confirms_it() -> None:
    gate = OffsetGate()
    gate.sought({TP: 8043})
    stale = gate.epoch
    assert gate.admit(TP, 8082, stale) is Verdict.RESEEK  # what the join/leave test saw after the seek
    assert gate.reseeking(TP) == 8043
    assert gate.admit(TP, 8083, stale) is Verdict.SKIP  # the rest of the batch fetched before the re-seek
    assert gate.admit(TP, 8043, gate.epoch) is Verdict.DELIVER  # the re-fetch starts at the expected offset
    assert gate.reseeks == 1 and gate.accepted_gaps == 0


def test_a_real_hole_is_accepted_once_fetched_again() -> None:
    gate = OffsetGate()
    gate.sought({TP: 10})
    assert gate.admit(TP, 12, gate.epoch) is Verdict.RESEEK  # 11 is a transaction marker, say
    gate.reseeking(TP)
    assert gate.admit(TP, 12, gate.epoch) is Verdict.DELIVER
    assert gate.accepted_gaps == 1 and gate.expected(TP) == 13


def test_a_position_past_undelivered_records_is_sought_back() -> None:
    gate = OffsetGate()
    gate.sought({TP: 100})
    assert gate.admit(TP, 100, gate.epoch) is Verdict.DELIVER
    assert not gate.check_position(TP, 101, gate.epoch)  # in step
    assert gate.check_position(TP, 140, gate.epoch)  # 101..139 dropped after aiokafka moved past them
    assert gate.reseeking(TP) == 101
    assert gate.check_position(TP, 101, gate.epoch) is False
    gate2 = OffsetGate()
    gate2.sought({TP: 7})
    assert gate2.check_position(TP, 8, gate2.epoch)  # 7 is a transaction marker at the end
    gate2.reseeking(TP)
    assert not gate2.check_position(TP, 8, gate2.epoch)  # still there after a fresh fetch: a real hole
    assert gate2.expected(TP) == 8 and gate2.accepted_gaps == 1


def test_no_committed_offset_takes_the_first_record_and_revoke_closes_the_gate() -> None:
    gate = OffsetGate()
    gate.sought({TP: None})
    assert gate.expected(TP) == ANY
    assert gate.admit(TP, 500, gate.epoch) is Verdict.DELIVER
    assert gate.admit(TP, 502, gate.epoch) is Verdict.RESEEK
    gate.forget([TP])
    assert gate.admit(TP, 501, gate.epoch) is Verdict.SKIP


@st.composite
def fetch_histories(draw: st.DrawFn) -> tuple[int, int, list[tuple[str, int]]]:
    """A partition of ``end`` offsets with holes, committed at ``start``, and a schedule of fetch events."""
    end = draw(st.integers(5, 60))
    start = draw(st.integers(0, end - 1))
    actions = draw(st.lists(st.tuples(st.sampled_from(["fetch", "fetch", "stale", "rebalance"]), st.integers(0, end)),
                            min_size=1, max_size=80))
    return start, end, actions


@settings(max_examples=400, deadline=None)
@given(history=fetch_histories(), holes=st.sets(st.integers(0, 60), max_size=5), batch=st.integers(1, 6))
def test_what_the_gate_delivers_never_skips_a_record(history: tuple[int, int, list[tuple[str, int]]],
                                                     holes: set[int], batch: int) -> None:
    """A model of Faust over aiokafka: a position, batches from it, and the failures seen in the fault test.

    ``stale``: a batch fetched earlier, from anywhere, handed out now. ``rebalance``: records dropped after
    the position moved past them (anywhere), then Faust's seek to a committed offset (never past what
    was delivered). Holes are offsets with no record (transaction markers). The state's redelivery
    check needs exactly this: every delivered offset beyond the highest so far is the *next* record,
    and in the end every record was delivered.
    """
    start, end, actions = history
    records = [o for o in range(start, end) if o not in holes]
    after = {a: b for a, b in zip(records, records[1:], strict=False)}
    gate = OffsetGate()
    gate.sought({TP: start})
    position, delivered = start, []

    def fetch(frm: int, epoch: int) -> None:
        nonlocal position
        for offset in [o for o in records if o >= frm][:batch]:
            verdict = gate.admit(TP, offset, epoch)
            if verdict is Verdict.DELIVER:
                delivered.append(offset)
            elif verdict is Verdict.RESEEK:
                position = gate.reseeking(TP)
                return

    def fetch_from_position() -> None:
        nonlocal position
        epoch, frm = gate.epoch, position
        got = [o for o in records if o >= frm][:batch]
        position = got[-1] + 1 if got else frm  # the consumer moves past what it returns
        fetch(frm, epoch)
        if gate.check_position(TP, position, gate.epoch if position == frm else epoch):
            position = gate.reseeking(TP)

    for kind, at in actions:
        if kind == "fetch":
            fetch_from_position()
        elif kind == "stale":
            fetch(at, gate.epoch - 1)
        else:
            position = at  # records dropped: the position moved past them
            high = max(delivered, default=start - 1)
            committed = min(at, high + 1) if delivered else start
            gate.sought({TP: committed})
            position = committed
    for _ in range(len(records) + 2):
        fetch_from_position()

    high = None
    for offset in delivered:
        if high is None:
            assert offset == records[0]
        elif offset > high:
            assert offset == after[high], f"{offset} delivered after {high}: a record was skipped"
        high = offset if high is None else max(high, offset)
    assert high == (records[-1] if records else None)


def test_the_gate_counters_are_scraped_from_the_metrics_registry() -> None:
    from prometheus_client import generate_latest

    from app.metrics import Metrics

    holder: dict[str, OffsetGate] = {}
    metrics = Metrics.create(offset_gate=lambda: holder.get("gate"))
    assert b"offset_gate" not in generate_latest(metrics.registry)  # no consumer yet: no series
    gate = holder["gate"] = OffsetGate()
    gate.sought({TP: 10})
    assert gate.admit(TP, 9, gate.epoch) is Verdict.SKIP
    assert gate.admit(TP, 12, gate.epoch) is Verdict.RESEEK
    text = generate_latest(metrics.registry).decode()
    assert "cryptotrace_offset_gate_skipped_total 1.0" in text
    assert "cryptotrace_offset_gate_reseeks_total 1.0" in text
    assert "cryptotrace_offset_gate_accepted_gaps_total 0.0" in text
