"""SLURM provider: pilot workers submitted with `sbatch`, locally or through a login node over SSH."""

from __future__ import annotations

from corral.providers.slurm.provider import SlurmProvider, make_provider

__all__ = ["SlurmProvider", "make_provider"]
