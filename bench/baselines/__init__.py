"""Baselines the benchmarks compare against, measured in the same run on the same machine."""
