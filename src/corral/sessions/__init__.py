"""Benchmark sessions: recipes, service/client types, the runner, results, reports, comparisons."""
