"""The fake's hosts: one network namespace per vast machine (198.51.100.0/24 only), a real sshd per instance.

Layout (as scripts/sshd.sh): a switch namespace with a bridge, a gateway namespace (198.51.100.1) and one
namespace per machine (198.51.100.10+k). Each namespace is held by a `sleep` process (entered with
nsenter), not a name under /run/netns: nothing another process does to named namespaces can break it.
Nothing here touches the host's own network: the SSH "proxy" of
an instance is a listener on 127.0.0.1 whose every connection is carried by a relay process running INSIDE
the gateway namespace (nsenter), so traffic to 198.51.100.x never leaves from the host namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
SSHD = "/usr/sbin/sshd"

# Runs in the gateway namespace: one TCP connection to argv[1]:argv[2], bytes to and from stdin/stdout.
RELAY = r"""
import os, socket, sys, threading
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.settimeout(None)
def up():
    while True:
        b = os.read(0, 65536)
        if not b:
            break
        s.sendall(b)
    try:
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
threading.Thread(target=up, daemon=True).start()
while True:
    b = s.recv(65536)
    if not b:
        break
    os.write(1, b)
"""


@dataclass
class Namespace:
    """A network namespace held open by a process."""

    name: str
    holder: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.holder.pid

    @property
    def enter(self) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net"]

    def ip(self, *args: str, check: bool = True) -> None:
        subprocess.run([*self.enter, "ip", *args], check=check, capture_output=True)

    def inode(self) -> str:
        return os.readlink(f"/proc/{self.pid}/ns/net")


def new_namespace(name: str) -> Namespace:
    holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"], start_new_session=True)
    for _ in range(200):  # until unshare has switched namespaces
        if os.readlink(f"/proc/{holder.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
            break
        time.sleep(0.005)
    ns = Namespace(name, holder)
    ns.ip("link", "set", "lo", "up")
    return ns


@dataclass
class Machine:
    machine_id: int
    namespace: Namespace
    address: str


@dataclass
class InstanceHost:
    """What runs for one instance: its sshd (in its machine's namespace) and its loopback proxy."""

    instance_id: int
    machine: Machine
    directory: Path
    proxy: asyncio.Server | None = None
    proxy_port: int = 0
    mode: str = "normal"  # normal | refuse | hang | close (the proxy's behaviour: SSH faults)
    sshd_pid: int | None = None
    port: int = 22  # sshd's port on the machine (several instances can share a machine)
    relays: set[asyncio.subprocess.Process] = field(default_factory=set)


class Machines:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.prefix = f"fv{os.getpid() % 100000:05d}"
        self.machines: dict[int, Machine] = {}
        self.hosts: dict[int, InstanceHost] = {}
        self.namespaces: list[Namespace] = []
        self._ready = False

    # ------------------------------------------------------------ network

    def setup(self) -> None:
        if self._ready:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        key = self.dir / "host_key"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        self.switch = self._namespace("sw")
        self.switch.ip("link", "add", "br0", "type", "bridge")
        self.switch.ip("link", "set", "br0", "up")
        self.gateway = self._attach("gw", "198.51.100.1")
        self._ready = True

    def _namespace(self, name: str) -> Namespace:
        ns = new_namespace(name)
        self.namespaces.append(ns)
        with open(self.dir / "holders", "a") as f:  # for a cleanup after a crash (process.py)
            f.write(f"{ns.pid}\n")
        return ns

    def _attach(self, name: str, address: str) -> Namespace:
        ns = self._namespace(name)
        peer = f"v{name}"
        ns.ip("link", "add", "eth0", "type", "veth", "peer", "name", peer, "netns", str(self.switch.pid))
        ns.ip("addr", "add", f"{address}/24", "dev", "eth0")
        ns.ip("link", "set", "eth0", "up")
        self.switch.ip("link", "set", peer, "master", "br0", "up")
        return ns

    def machine(self, machine_id: int) -> Machine:
        found = self.machines.get(machine_id)
        if found is None:
            index = len(self.machines)
            if index > 240:
                raise RuntimeError("the fake runs at most 240 machines at once (198.51.100.10-250)")
            address = f"198.51.100.{10 + index}"
            found = Machine(machine_id, self._attach(f"m{index}", address), address)
            self.machines[machine_id] = found
        return found

    def set_link(self, machine: Machine, up: bool) -> None:
        machine.namespace.ip("link", "set", "eth0", "up" if up else "down", check=False)

    # ------------------------------------------------------------ instances

    async def boot(
        self, instance_id: int, machine_id: int, keys: list[str], gpu_state: dict[str, Any]
    ) -> InstanceHost:
        """The instance's files, its loopback proxy (listening at once, like vast's ssh proxy) and its
        sshd; call `start_sshd` when the container is up."""
        self.setup()
        machine = self.machine(machine_id)
        d = self.dir / f"i{instance_id}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "authorized_keys").write_text("\n".join(keys) + "\n")
        gpu_state = {**gpu_state, "instance": instance_id}
        (d / "gpus.json").write_text(json.dumps(gpu_state))
        env = {
            "SHLVL": "1",
            "PATH": f"{HERE / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONPATH": str(HERE / "site"),
            "FAKE_VAST_GPU_FILE": str(d / "gpus.json"),
            "CONTAINER_ID": str(instance_id),
            "VAST_CONTAINERLABEL": f"C.{instance_id}",
        }
        (d / "sshd_config").write_text(
            "\n".join(
                [
                    f"HostKey {self.dir / 'host_key'}",
                    f"AuthorizedKeysFile {d / 'authorized_keys'}",
                    "UsePAM no",
                    "StrictModes no",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "Subsystem sftp internal-sftp",
                    "MaxSessions 200",
                    "MaxStartups 200",
                    "AllowTcpForwarding yes",
                    "ClientAliveInterval 5",
                    "ClientAliveCountMax 6",
                    "LogLevel ERROR",
                    "SetEnv " + " ".join(f"{k}={v}" for k, v in env.items()),
                    "",
                ]
            )
        )
        host = InstanceHost(instance_id, machine, d, port=22000 + instance_id % 10000)
        host.proxy = await asyncio.start_server(lambda r, w: self._relay(host, r, w), "127.0.0.1", 0)
        host.proxy_port = host.proxy.sockets[0].getsockname()[1]
        self.hosts[instance_id] = host
        return host

    def start_sshd(self, host: InstanceHost, hostname: str) -> None:
        pid_file = host.directory / "sshd.pid"
        pid_file.unlink(missing_ok=True)
        cfg, log = host.directory / "sshd_config", host.directory / "sshd.log"
        subprocess.run(
            [
                *host.machine.namespace.enter,
                "unshare",
                "--uts",
                "sh",
                "-c",
                f"hostname {hostname}; exec {SSHD} -f {cfg} -o ListenAddress={host.machine.address} "
                f"-o Port={host.port} -o PidFile={pid_file} -E {log}",
            ],
            check=True,
            capture_output=True,
        )
        for _ in range(100):
            with contextlib.suppress(OSError, ValueError):
                host.sshd_pid = int(pid_file.read_text())
                return
            time.sleep(0.05)

    def write_gpus(self, instance_id: int, change: dict[str, Any]) -> None:
        host = self.hosts[instance_id]
        path = host.directory / "gpus.json"
        state = json.loads(path.read_text())
        state.update(change)
        path.write_text(json.dumps(state))

    async def _relay(
        self, host: InstanceHost, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if host.mode == "close" or (host.sshd_pid is None and host.mode == "normal"):
            writer.close()  # the proxy drops the connection before the key exchange
            return
        if host.mode == "hang":
            with contextlib.suppress(Exception):
                await reader.read()  # accepts, never answers
            writer.close()
            return
        proc = await asyncio.create_subprocess_exec(
            *self.gateway.enter,
            "python3",
            "-c",
            RELAY,
            host.machine.address,
            str(host.port),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        host.relays.add(proc)
        assert proc.stdin is not None and proc.stdout is not None
        stdin, stdout = proc.stdin, proc.stdout

        async def up() -> None:
            with contextlib.suppress(Exception):
                while data := await reader.read(65536):
                    stdin.write(data)
                    await stdin.drain()
            with contextlib.suppress(Exception):
                stdin.close()

        async def down() -> None:
            with contextlib.suppress(Exception):
                while data := await stdout.read(65536):
                    writer.write(data)
                    await writer.drain()
            with contextlib.suppress(Exception):
                writer.close()

        try:
            await asyncio.gather(up(), down())
        finally:
            host.relays.discard(proc)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def kill_processes(self, machine: Machine, instance_id: int | None = None) -> None:
        """What runs in the instance's container (its sshd, the worker, its jobs), or everything on the
        machine: the container or the host is gone."""
        host = self.hosts.get(instance_id) if instance_id is not None else None
        procs: list[psutil.Process] = []
        for pid in _pids_in(machine.namespace):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if (
                    host is not None
                    and proc.pid != host.sshd_pid
                    and (proc.environ().get("CONTAINER_ID") != str(instance_id))
                ):
                    continue
                procs += [proc, *proc.children(recursive=True)]
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        # No waiting: PID 1 here may never reap them; SIGKILL is enough (they are gone or zombies).

    async def stop_instance(self, instance_id: int, *, keep_proxy: bool = False) -> None:
        host = self.hosts.get(instance_id)
        if host is None:
            return
        await asyncio.to_thread(self.kill_processes, host.machine, instance_id)
        host.sshd_pid = None
        for proc in list(host.relays):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        if not keep_proxy:
            self.hosts.pop(instance_id, None)
            if host.proxy is not None:
                host.proxy.close()

    def teardown(self) -> None:
        for machine in self.machines.values():
            self.kill_processes(machine)
        for ns in self.namespaces:  # the holders last: the namespaces go with them
            ns.holder.kill()
            ns.holder.wait()
        (self.dir / "holders").unlink(missing_ok=True)


def _pids_in(ns: Namespace) -> list[int]:
    return pids_in_namespace_of(ns.pid)


def pids_in_namespace_of(holder: int) -> list[int]:
    """Processes in the holder's network namespace, the holder excepted (`ip netns pids` for a name)."""
    try:
        target = os.readlink(f"/proc/{holder}/ns/net")
    except OSError:
        return []
    if target == os.readlink("/proc/self/ns/net"):
        return []  # the holder is gone and its pid reused: never the host's namespace
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != holder:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/net") == target:
                    found.append(int(entry))
    return found
