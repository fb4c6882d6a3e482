"""The embedded default: jobs use the submitting user's venv and working directory, wherever they live.

Built like a checkout and venv under /tmp (which a job's private /tmp used to hide): a venv in /tmp whose
.pth file reaches this checkout's packages, a working directory in /tmp with the user's own module.
The server runs from that venv in that directory, with the venv active; a job finds both.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.acceptance.harness import RunningServer, job

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tmp_checkout() -> Iterator[tuple[Path, Path]]:
    base = Path(tempfile.mkdtemp(prefix="corral-checkout-", dir="/tmp"))
    base.chmod(0o755)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    packages = next(venv.glob("lib/python*/site-packages"))
    (packages / "corral-checkout.pth").write_text(f"{site.getsitepackages()[0]}\n{ROOT / 'src'}\n")
    workdir = base / "work"
    workdir.mkdir()
    (workdir / "usermod.py").write_text("GREETING = 'hello from the user module'\n")
    yield venv, workdir
    shutil.rmtree(base, ignore_errors=True)


def test_a_job_uses_the_users_venv_and_working_directory_under_tmp(
    tmp_checkout: tuple[Path, Path], tmp_path: Path
) -> None:
    venv, workdir = tmp_checkout
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update({
        "CORRAL_HOME": str(home), "CORRAL_PORT": "0", "CORRAL_URL_FILE": str(home / "server.url"),
        "CORRAL_LOCAL_WORKERS": "1", "CORRAL_LOCAL_WORKER_CORES": "2", "CORRAL_LOCAL_WORKER_MEMORY": "4Gi",
        "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    })
    server = RunningServer(home, env)
    cwd = os.getcwd()
    os.chdir(workdir)  # the server starts where the user works
    try:
        server.start_with(venv / "bin" / "python")
    finally:
        os.chdir(cwd)
    try:
        marker = uuid.uuid4().hex
        script = (
            f"cd {workdir} && python -c 'import sys, usermod, corral; print(sys.prefix); "
            "print(usermod.GREETING)' && echo VENV=$VIRTUAL_ENV && echo NPROC=$(nproc) && "
            f"touch {workdir}/{marker} 2>/dev/null || echo READ-ONLY"
        )
        batch_id = server.submit([job(script, 1, cpu="1")])
        status = server.wait(batch_id)
        with server.client() as c:
            log = c.get(f"/api/v1/batches/{batch_id}/jobs/1/log/main").text
        assert status["state"] == "success", (status, log, server.log_tail())
        lines = log.split()
        assert str(venv) in lines  # sys.prefix of the user's venv
        assert "hello from the user module" in log
        assert f"VENV={venv}" in log
        assert "NPROC=1" in lines  # the job's cpu request, not the machine's cores
        assert "READ-ONLY" in log and not (workdir / marker).exists()
    finally:
        server.stop()
