"""File URLs have an owner: an ordinary user's file:// inputs and outputs are refused at submission."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from tests.acceptance.harness import RunningServer, job
from tests.security.conftest import Attacker, new_user, start_server


def _submit(server: RunningServer, token: str, spec: dict[str, object]) -> tuple[int, dict[str, object]]:
    body = {"batch": {"billing_project": "default", "token": uuid.uuid4().hex, "n_jobs": 1},
            "bunch": [spec]}
    with server.client(token) as c:
        r = c.post("/api/v1/batches/create-fast", json=body)
    return r.status_code, r.json()


@pytest.mark.parametrize("url", [
    "file://{home}/tokens.json", "{home}/corral.db", "file:///etc/shadow", "local:///root/.ssh/id_rsa",
    "file://localhost/etc/shadow", "simplecache::file:///etc/passwd", "file:///tmp/../etc/shadow",
])
def test_file_inputs_outside_the_users_roots_are_a_400_naming_the_field(
    server: RunningServer, attacker: Attacker, url: str
) -> None:
    spec = job("cat /io/x", 1, input_files=[{"from": url.format(home=server.home), "to": "/io/x"}])
    code, body = _submit(server, attacker.token, spec)
    assert code == 400, body
    assert body.get("field") == "bunch[0].input_files[0].from" or "input_files[0].from" in json.dumps(body)


def test_file_outputs_outside_the_users_roots_are_a_400_and_write_nothing(
    server: RunningServer, attacker: Attacker
) -> None:
    target = Path("/etc") / f"corral-attack-{uuid.uuid4().hex}"
    spec = job("echo pwned > /io/o", 1, output_files=[{"from": "/io/o", "to": f"file://{target}"}])
    code, body = _submit(server, attacker.token, spec)
    assert code == 400 and "output_files[0].to" in json.dumps(body), body
    assert not target.exists()


def test_the_admin_token_cannot_be_copied_in_through_a_symlink(
    server: RunningServer, tmp_path: Path
) -> None:
    """A root configured for the user holding a link to tokens.json: refused (resolved at submission)."""
    shared = Path(tempfile.mkdtemp(prefix="corral-shared-"))  # not under tmp_path: that is root's (0700)
    (shared / "innocent").symlink_to(server.home / "tokens.json")
    config = tmp_path / "corral.toml"
    config.write_text(f'[files]\nallowed_roots = ["{shared}"]\n')
    site = start_server(tmp_path / "home", config=str(config))
    try:
        user = new_user(site)
        spec = job("cat /io/x", 1, input_files=[{"from": f"file://{shared}/innocent", "to": "/io/x"}])
        code, body = _submit(site, user.token, spec)
        assert code == 400, body
        # Allowed: a file the user's root holds, copied with the job's uid (world-readable here).
        shared.chmod(0o755)
        (shared / "data.txt").write_text("shared data\n")
        status, log = user.run("cat /io/data.txt", input_files=[  # copied with the job's uid
            {"from": f"file://{shared}/data.txt", "to": "/io/data.txt"}])
        assert status["state"] == "Success", status
        assert "shared data" in log
    finally:
        site.stop()
        shutil.rmtree(shared, ignore_errors=True)


def test_the_embedded_default_user_reads_and_writes_their_own_files(server: RunningServer) -> None:
    """The server's own user: their working directory (here the server's cwd) is theirs."""
    workdir = Path(os.getcwd())
    src = workdir / f".corral-test-{uuid.uuid4().hex}.txt"
    out = workdir / f".corral-test-{uuid.uuid4().hex}.out"
    src.write_text("mine\n")
    try:
        batch_id = server.submit([job("tr a-z A-Z < /io/in > /io/out", 1,
                                      input_files=[{"from": f"file://{src}", "to": "/io/in"}],
                                      output_files=[{"from": "/io/out", "to": f"file://{out}"}])])
        status = server.wait(batch_id)
        assert status["state"] == "success", (status, server.jobs(batch_id))
        assert out.read_text() == "MINE\n"
        code, body = _submit(server, server.token, job("true", 1, input_files=[
            {"from": f"file://{server.home}/tokens.json", "to": "/io/x"}]))
        assert code == 400, body  # CORRAL_HOME stays excluded even for the server's own user
    finally:
        src.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
