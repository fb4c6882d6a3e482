"""`corral pool …` and `corral instance …`: the machines behind the jobs, and why they are (not) there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from corral.cli.common import CorralGroup, connect, console, escape, print_json, read_client, table

if TYPE_CHECKING:
    from corral.client.reader import Record

pool_app = typer.Typer(
    cls=CorralGroup, no_args_is_help=True, help="Pools (instance collections) and their health."
)
instance_app = typer.Typer(
    cls=CorralGroup, no_args_is_help=True, help="Instances: the machines that run jobs; tokens for your own."
)

INSTANCE_COLUMNS = [
    "instance", "pool", "state", "host", "address", "provider id", "cores", "health", "jobs", "ended because",
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]
HEALTH_STYLES = {
    "ok": "green", "backing_off": "yellow", "failing": "red", "healthy": "green", "starting": "cyan",
}


def _health(text: str) -> str:
    style = HEALTH_STYLES.get(text, "red" if text.startswith("silent") else "dim")
    return f"[{style}]{escape(text)}[/]"


def _shape(p: Record) -> str:
    if p.shape is None:
        return "sized per job" if p.kind == "job_private" else ""
    parts = [f"{p.shape.cores:g} cores" if p.shape.cores else ""]
    if p.shape.memory:
        parts.append(p.shape.memory)
    if p.shape.gpus:
        parts.append(f"{p.shape.gpus} GPU {p.shape.gpu_type or ''}".strip())
    return ", ".join(x for x in parts if x)


def _instances(p: Record) -> str:
    text = ", ".join(f"{n} {state}" for state, n in sorted(p.instances.items())) or "none"
    if p.max_instances is not None:
        text += f" (max {p.max_instances})"
    return text


@pool_app.command("list")
def list_pools(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Every pool: provider, shape, instances by state, free cores, queued jobs, health and last error."""
    with read_client(ctx) as client:
        pools = client.list_pools()
    if as_json:
        print_json(pools)
        return
    table(
        None,
        ["pool", "kind", "provider", "shape", "instances", "free cores", "running", "queued", "health"],
        [
            [p.name, p.kind, p.provider, _shape(p), _instances(p), f"{p.cores_free:g}/{p.cores_total:g}",
             p.jobs_running, p.jobs_ready, _health(p.health)]
            for p in pools
        ],
    )
    for p in pools:
        if p.last_error and p.health != "ok":
            console.print(
                f"[red]pool {escape(p.name)}[/] ({p.health}, {p.n_failures} failures in a row, last at "
                f"{p.time_last_error}): {escape(p.last_error)}", soft_wrap=True,
            )


@pool_app.command("get")
def get_pool(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Pool name")], as_json: JsonFlag = False
) -> None:
    """One pool, with its instances."""
    with read_client(ctx) as client:
        pool = client.get_pool(name)
        instances = client.list_instances(pool=name, ended=5)
    if as_json:
        print_json({**pool, "instance_list": instances})
        return
    console.print(
        f"pool [bold]{escape(pool.name)}[/] ({pool.kind}, provider {pool.provider}): {_shape(pool)}; "
        f"instances {_instances(pool)}; {pool.cores_free:g} of {pool.cores_total:g} cores free; "
        f"{pool.jobs_running} jobs running, {pool.jobs_ready} queued; health {_health(pool.health)}"
    )
    if pool.last_error:
        console.print(f"last error ({pool.time_last_error}): {escape(pool.last_error)}", soft_wrap=True)
    show_instances(instances)


def show_instances(instances: list[Record]) -> None:
    table(
        None,
        INSTANCE_COLUMNS,
        [
            [i.name, i.pool, i.state, i.host_name, i.address, i.provider_id, f"{i.cores:g}",
             _health(i.health), i.jobs_running, escape(i.end_reason or "")]
            for i in instances
        ],
    )


@instance_app.command("list")
def list_instances(
    ctx: typer.Context,
    pool: Annotated[str | None, typer.Option(help="Only this pool's instances")] = None,
    ended: Annotated[int, typer.Option(min=0, max=1000, help="Also the N most recent that ended")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Live instances: host name, address, provider id, health, jobs running."""
    with read_client(ctx) as client:
        instances = client.list_instances(pool=pool, ended=ended)
    if as_json:
        print_json(instances)
        return
    show_instances(instances)
    if not instances:
        console.print("no instances" + (f" in pool {pool}" if pool else ""))


@instance_app.command("get")
def get_instance(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Instance name")], as_json: JsonFlag = False
) -> None:
    """One instance, with the attempts it runs."""
    with read_client(ctx) as client:
        inst = client.get_instance(name)
    if as_json:
        print_json(inst)
        return
    show_instances([inst])
    console.print(
        f"created {inst.time_created}, active since {inst.time_activated or '-'}, last heartbeat "
        f"{inst.last_heartbeat or '-'}"
    )
    if inst.attempts:
        table(
            "running",
            ["batch", "job", "attempt", "user", "cores"],
            [
                [a.batch_id or "", a.job_id or "", a.attempt_id or "", a.user or "(another user)",
                 f"{a.cores:g}"]
                for a in inst.attempts
            ],
        )


@instance_app.command("token")
def instance_token(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name for the instance (unique)")],
    cores: Annotated[float, typer.Option(min=0.001, help="Cores the worker will offer")] = 1.0,
    memory: Annotated[str, typer.Option(help="Memory the worker will offer, e.g. 4Gi")] = "4Gi",
    pool: Annotated[str | None, typer.Option(help="Its pool; default: the server's default pool")] = None,
    gpus: Annotated[int, typer.Option(min=0, help="GPUs it has")] = 0,
    gpu_type: Annotated[str | None, typer.Option(help="Their type, e.g. a100")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Mint a token for a worker you start yourself: `corral worker --url … --name NAME --token …` (admin)."""
    from corral.api.system_schemas import InstanceTokenRequest

    request = InstanceTokenRequest(
        name=name, pool=pool, cores=cores, memory=memory, gpus=gpus, gpu_type=gpu_type
    )
    with connect(ctx, admin=True) as client:
        minted = client.create_instance_token(request)
        url = client.url
    if as_json:
        print_json(minted.model_dump(mode="json"))
        return
    what = f"instance [bold]{escape(minted.name)}[/] of pool {escape(minted.pool)}"
    console.print(f"{what}; token (shown once):", soft_wrap=True)
    typer.echo(minted.token)
    console.print("start its worker with:")
    typer.echo(minted.command.replace("URL", url))
