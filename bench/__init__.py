"""Corral's benchmarks: every workload against Corral and the peers on the same machine, in one run."""
