"""Offers for the fake, with the real field names and units (gpu_ram/cpu_ram in MB, $/h, $/GB/month)."""

from __future__ import annotations

import random
from typing import Any

# name, GPU RAM (MB), dlperf per GPU, typical $/h per GPU, compute capability
GPUS = [
    ("RTX 3090", 24576, 26.0, 0.20, 860),
    ("RTX 4090", 24564, 45.0, 0.38, 890),
    ("RTX A6000", 49140, 38.0, 0.45, 860),
    ("A100 SXM4", 81920, 85.0, 1.10, 800),
    ("H100 SXM", 81559, 150.0, 2.20, 900),
]
PLACES = ["Oslo, NO", "Frankfurt, DE", "Quebec, CA", "Texas, US", "Oregon, US", "Lodz, PL", "Tokyo, JP"]


def offer(
    ask_id: int, machine_id: int, gpu: str, num_gpus: int, *, dph: float | None = None, **extra: Any
) -> dict[str, Any]:
    """One offer; `dph` overrides the GPU's typical price (dph_total, per instance)."""
    name, ram, perf, price, cc = next(g for g in GPUS if g[0] == gpu)
    total = dph if dph is not None else round(price * num_gpus, 4)
    storage_cost = 0.15
    return {
        "id": ask_id,
        "ask_contract_id": ask_id,
        "machine_id": machine_id,
        "host_id": 100_000 + machine_id,
        "num_gpus": num_gpus,
        "gpu_name": name,
        "gpu_ram": ram,
        "gpu_total_ram": ram * num_gpus,
        "cpu_cores": 16 * num_gpus,
        "cpu_cores_effective": 4.0 * num_gpus,
        "cpu_ram": 32768 * num_gpus,
        "disk_space": 200.0,
        "dph_base": round(total - 0.01, 4),
        "dph_total": total,
        "storage_cost": storage_cost,
        "min_bid": round(total * 0.45, 4),
        "reliability": 0.995,
        "reliability2": 0.995,
        "inet_down": 800.0,
        "inet_up": 500.0,
        "direct_port_count": 20,
        "cuda_max_good": 12.4,
        "compute_cap": cc,
        "geolocation": "Oslo, NO",
        "verified": True,
        "external": False,
        "score": round(perf * num_gpus / total, 3),
        "dlperf": perf * num_gpus,
        "dlperf_per_dphtotal": round(perf * num_gpus / total, 3),
        **extra,
    }


def market(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """N offers over about N/3 machines (several asks per machine, as on the real market)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        name = rng.choice(GPUS)[0]
        count = rng.choice([1, 1, 2, 4, 8])
        price = next(g[3] for g in GPUS if g[0] == name) * count * rng.uniform(0.7, 1.6)
        out.append(
            offer(
                100_000 + i,
                50_000 + i // 3,
                name,
                count,
                dph=round(price, 4),
                reliability2=round(rng.uniform(0.85, 0.999), 4),
                inet_down=round(rng.uniform(50, 2000), 1),
                geolocation=rng.choice(PLACES),
                verified=rng.random() > 0.2,
                cuda_max_good=rng.choice([11.8, 12.1, 12.2, 12.4]),
            )
        )
    return out
