"""Drive the async BingX stream clients from synchronous tests."""

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any


def run(coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
    """Run a coroutine to completion, failing the test if it takes longer than ``timeout``."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def take(
    items: AsyncIterator[Any], n: int, on_each: Callable[[int], None] | None = None
) -> list:
    """Collect the first ``n`` items of a stream, calling ``on_each(count)`` after each."""
    out = []
    async for item in items:
        out.append(item)
        if on_each is not None:
            on_each(len(out))
        if len(out) == n:
            return out
    raise AssertionError("stream ended")
