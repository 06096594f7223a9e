"""traksense.asgi.Turns: requests waiting for the Django thread take turns by API key."""

from __future__ import annotations

import asyncio

from traksense.asgi import Turns


async def _run(turns: Turns, who: str, order: list[str], gate: asyncio.Event) -> None:
    async with turns.turn(who):
        order.append(who)
        await gate.wait()


def test_a_burst_of_one_key_does_not_queue_another_keys_request_behind_all_of_it() -> None:
    async def scenario() -> list[str]:
        turns, order = Turns(), list[str]()
        gate = asyncio.Event()
        tasks = [asyncio.create_task(_run(turns, "A", order, gate)) for _ in range(4)]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(_run(turns, "B", order, gate)))
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(*tasks)
        return order

    # A's first is running when B arrives behind three more of A's: B goes next, not last.
    assert asyncio.run(scenario()) == ["A", "A", "B", "A", "A"]


def test_a_waiter_cancelled_gives_up_its_place_and_a_cancelled_turn_passes_on() -> None:
    async def scenario() -> list[str]:
        turns, order = Turns(), list[str]()
        gate = asyncio.Event()
        first = asyncio.create_task(_run(turns, "A", order, gate))
        await asyncio.sleep(0)
        gone = asyncio.create_task(_run(turns, "B", order, gate))
        last = asyncio.create_task(_run(turns, "C", order, gate))
        await asyncio.sleep(0)
        gone.cancel()  # a client that disconnected while waiting
        gate.set()
        await asyncio.gather(first, last)
        assert gone.cancelled()
        # And nothing is left waiting: the next request runs at once.
        async with turns.turn("D"):
            order.append("D")
        return order

    assert asyncio.run(scenario()) == ["A", "C", "D"]
