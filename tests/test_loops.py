"""wsauth.loops: per-event-loop state, made on first use in a loop and dropped with it."""

from __future__ import annotations

import asyncio
import gc

import pytest

from wsauth.loops import PerLoop


def test_one_value_per_loop_made_once():
    made = []
    state = PerLoop(lambda: made.append(object()) or made[-1])

    async def twice():
        return state.get(), state.get(), state.peek()

    first = asyncio.run(twice())
    second = asyncio.run(twice())
    assert first[0] is first[1] is first[2]
    assert second[0] is second[1] is second[2]
    assert first[0] is not second[0]
    assert len(made) == 2


def test_peek_without_a_loop_or_before_first_use():
    state = PerLoop(object)
    assert state.peek() is None

    async def peek_then_get():
        before = state.peek()
        return before, state.get()

    before, value = asyncio.run(peek_then_get())
    assert before is None and value is not None


def test_replace_and_clear():
    state = PerLoop(lambda: "made")

    async def body():
        assert state.get() == "made"
        assert state.replace("mine") == "mine"
        assert state.get() == "mine"
        state.clear()
        return state.peek(), state.get()

    assert asyncio.run(body()) == (None, "made")


def test_a_closed_loops_value_is_dropped_with_it():
    state = PerLoop(dict)

    async def touch():
        state.get()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(touch())
    assert len(state._by_loop) == 1
    loop.close()
    del loop
    state._last = None  # the fast path's weak reference holds nothing either
    gc.collect()
    assert len(state._by_loop) == 0


def test_get_needs_a_running_loop():
    with pytest.raises(RuntimeError):
        PerLoop(object).get()
