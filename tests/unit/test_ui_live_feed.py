"""The live-update feed: one render per batch change fanned out to every open page, coalesced."""

from __future__ import annotations

import asyncio

from corral.ui.live import BatchFeed, BatchUpdate


async def test_one_render_reaches_every_subscriber_of_the_batch() -> None:
    feed = BatchFeed(min_interval=0.05)
    rendered: list[int] = []

    async def render(batch_id: int) -> BatchUpdate:
        rendered.append(batch_id)
        return BatchUpdate(f"<b>{batch_id}</b>", complete=False)

    feed.render = render
    async with feed.subscribe(7) as a, feed.subscribe(7) as b, feed.subscribe(8) as other:
        assert feed.n_subscribers == 3
        feed.publish({7: {1, 2}, 9: None})  # nobody watches batch 9: nothing is read for it
        await asyncio.wait_for(a.ready.wait(), 5)
        await asyncio.wait_for(b.ready.wait(), 5)
        assert rendered == [7]
        assert a.take() == (BatchUpdate("<b>7</b>", False), {1, 2})
        assert b.take()[1] == {1, 2}
        assert not other.ready.is_set()
        # Changes arriving faster than min_interval are merged into one more render.
        feed.publish({7: {3}})
        feed.publish({7: None})
        await asyncio.wait_for(a.ready.wait(), 5)
        await asyncio.sleep(0.2)
        assert rendered == [7, 7]
        assert a.take()[1] is None  # None: any job may have changed
    assert feed.n_subscribers == 0
    await feed.close()


async def test_a_failing_render_does_not_reach_the_driver() -> None:
    feed = BatchFeed(min_interval=0.0)

    async def render(batch_id: int) -> BatchUpdate:
        raise RuntimeError("store down")

    feed.render = render
    async with feed.subscribe(1) as sub:
        feed.publish({1: {1}})  # must not raise
        await asyncio.sleep(0.1)
        assert not sub.ready.is_set() and feed.renders == 1


async def test_closing_the_streams_wakes_every_open_page() -> None:
    feed = BatchFeed()
    async with feed.subscribe(1) as a, feed.subscribe(2) as b:
        feed.close_streams()
        assert feed.closed and a.ready.is_set() and b.ready.is_set()
        assert a.take() == (None, set())  # nothing to send: the stream ends
