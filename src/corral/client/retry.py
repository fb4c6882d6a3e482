"""The clients' one retry policy: connection errors and 502/503/504 back off exponentially with jitter.

The async client (http.py) and the blocking reader (reader.py) send their own way and ask `settle` what
each try's outcome means; `pauses` says how long to wait before the next one.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import httpx

from corral.client.errors import RETRY_STATUSES, ServerUnreachable, error_from_response

MAX_PAUSE = 10.0  # seconds


def tries(retries: int, backoff: float) -> Iterator[tuple[bool, float]]:
    """(whether this try is the last, the pause before the next) for 1 + `retries` tries."""
    delay = backoff
    for attempt in range(retries + 1):
        yield attempt == retries, delay * (0.5 + random.random())
        delay = min(delay * 2, MAX_PAUSE)


def settle(
    url: str, last: bool, response: httpx.Response | None, error: httpx.TransportError | None, *,
    idempotent: bool = True,
) -> httpx.Response | None:
    """The response to return, None to try again, or the error to raise (after the last try).

    A non-idempotent request is tried again only when it certainly never reached the server.
    """
    if isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout)):
        if last:
            raise ServerUnreachable(f"cannot reach the Corral server at {url}: {error}") from error
        return None
    if error is not None:
        if last or not idempotent:
            raise ServerUnreachable(f"the Corral server at {url} did not answer: {error}") from error
        return None
    assert response is not None
    if response.status_code < 400:
        return response
    if response.status_code not in RETRY_STATUSES:
        raise error_from_response(response)
    if last:  # restarting (or its proxy has no backend) through every try: as good as down
        said = error_from_response(response).message
        raise ServerUnreachable(f"the Corral server at {url} is not available: {said}")
    return None
