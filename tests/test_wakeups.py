"""The hot paths' wake-ups, clock and checkpoint act as anyio's own, on both loops."""

import anyio
import anyio.lowlevel
import pytest

from datagraph._wakeups import Wakeup, checkpoint, clock, current_loop, wakeup

pytestmark = pytest.mark.anyio


async def test_a_wakeup_set_before_the_wait_returns_at_once() -> None:
    signal = wakeup()
    signal.set()
    signal.set()  # again: nothing more happens
    with anyio.fail_after(1):
        assert await signal.wait() is True


async def test_a_wakeup_set_by_another_task_ends_the_wait() -> None:
    signal = wakeup()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_set_soon, signal)
        with anyio.fail_after(5):
            assert await signal.wait(clock() + 10) is True


async def _set_soon(signal: Wakeup) -> None:
    await anyio.sleep(0.01)
    signal.set()


async def test_a_wait_ends_at_its_deadline_unset() -> None:
    signal = wakeup()
    started = anyio.current_time()
    assert await signal.wait(clock() + 0.05) is False
    assert anyio.current_time() - started >= 0.04
    signal.set()  # after the waiter gave up: harmless


async def test_a_past_deadline_returns_without_waiting() -> None:
    with anyio.fail_after(1):
        assert await wakeup().wait(clock() - 1) is False


async def test_an_anyio_cancel_scope_cancels_the_wait() -> None:
    signal = wakeup()
    with anyio.move_on_after(0.05) as scope:
        await signal.wait()
    assert scope.cancelled_caught
    signal.set()  # the waiter is gone: nothing to wake, no error


async def test_cancelling_a_task_group_stops_a_waiting_task() -> None:
    signal = wakeup()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(signal.wait)
            await anyio.sleep(0.01)
            tg.cancel_scope.cancel()


async def test_the_clock_is_anyios_clock() -> None:
    before = anyio.current_time()
    now = clock()
    assert before <= now <= anyio.current_time()


async def test_the_loop_is_the_one_anyio_names() -> None:
    assert current_loop() is anyio.lowlevel.current_token().native_token


async def test_checkpoint_lets_other_tasks_run_and_cancellation_in() -> None:
    ran: list[bool] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_note, ran)
        for _ in range(100):  # trio may run a new task a round later
            await checkpoint()
            if ran:
                break
        assert ran == [True]
    with anyio.CancelScope() as scope:
        scope.cancel()
        await checkpoint()
        pytest.fail("a cancelled scope must stop at the checkpoint")
    assert scope.cancelled_caught


async def _note(ran: list[bool]) -> None:
    ran.append(True)
