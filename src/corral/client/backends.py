"""Where a Batch runs: an existing server (ServiceBackend) or the embedded one (LocalBackend).

Both give the DSL a blocking client and a tmpdir URL for files that move between jobs.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from typing import Protocol

from corral.client.discovery import read_tokens, resolve_token, resolve_url, tokens_file
from corral.client.local_server import (
    Lease,
    LocalServer,
    ensure_server_locked,
    other_clients_alive,
    start_lock,
    stop_embedded_server,
)
from corral.client.sync import SyncClient
from corral.errors import CorralError
from corral.hail.buckets import local_bucket_root
from corral.home import default_home


def dsl_tmpdir(home: Path) -> str:
    """Where a pipeline's intermediate files go on this machine: under the home's local bucket, the one
    place inside CORRAL_HOME that file:// URLs may name (see corral.files.roots)."""
    return (local_bucket_root(home) / "tmp").as_uri()


class Backend(Protocol):
    billing_project: str

    @property
    def tmpdir(self) -> str: ...

    def client(self) -> SyncClient: ...

    def close(self) -> None: ...


class ServiceBackend:
    """A running Corral server. Defaults: CORRAL_URL / CORRAL_TOKEN, else the local server's files under
    $CORRAL_HOME. `remote_tmpdir` must be reachable by the workers (default: the home's local bucket,
    $CORRAL_HOME/buckets/corral-local/tmp, right when they share this machine's filesystem)."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        billing_project: str = "default",
        remote_tmpdir: str | None = None,
        home: Path | None = None,
    ) -> None:
        self.home = home  # the client's CORRAL_HOME when given (sweeps' default storage is its bucket)
        self.url = resolve_url(url, home=home)
        self._token = resolve_token(token, home=home)
        self.billing_project = billing_project
        self._tmpdir = (remote_tmpdir or dsl_tmpdir(home or default_home())).rstrip("/")
        self._client: SyncClient | None = None
        self._lock = threading.Lock()

    @property
    def tmpdir(self) -> str:
        return self._tmpdir

    def client(self) -> SyncClient:
        with self._lock:
            if self._client is None:
                self._client = SyncClient(self.url, self._token)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> ServiceBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalBackend:
    """The embedded system for one CORRAL_HOME: reuses its running server, or starts one (with `workers`
    local workers of `cores` cores each). Several LocalBackends (notebooks, scripts) share the server;
    the last one to close (close(), context exit or interpreter exit) stops a server a LocalBackend
    started — never one started with `corral server`."""

    def __init__(
        self,
        home: Path | None = None,
        workers: int = 1,
        cores: float | None = None,
        *,
        billing_project: str = "default",
    ) -> None:
        self.home = Path(home or default_home()).resolve()
        self.workers = workers
        self.cores = cores
        self.billing_project = billing_project
        self._server: LocalServer | None = None
        self._lease: Lease | None = None
        self._client: SyncClient | None = None
        self._url: str | None = None
        self._lock = threading.Lock()

    @property
    def tmpdir(self) -> str:
        return dsl_tmpdir(self.home)

    @property
    def url(self) -> str:
        self.client()
        assert self._url is not None
        return self._url

    @property
    def started_server(self) -> bool:
        return self._server is not None

    def client(self) -> SyncClient:
        with self._lock:
            if self._client is None:
                with start_lock(self.home):
                    url, server = ensure_server_locked(self.home, workers=self.workers, cores=self.cores)
                    self._server = server
                    self._lease = Lease(self.home)
                atexit.register(self.close)
                token = read_tokens(self.home).get("token")
                if not token:
                    raise CorralError(
                        f"the server for {self.home} is running but {tokens_file(self.home)} has no token"
                    )
                self._url = url
                self._client = SyncClient(url, token)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._lease is not None:
                with start_lock(self.home):
                    self._lease.release()
                    self._lease = None
                    if not other_clients_alive(self.home):
                        if self._server is not None:
                            self._server.stop()
                        stop_embedded_server(self.home)
                self._server = None
                atexit.unregister(self.close)

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
