"""Benchmarks against named baselines measured in the same run (issue 8). Entry: ``python -m bench.run``."""
