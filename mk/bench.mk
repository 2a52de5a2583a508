# Benchmarks (issue 8; not part of `make test`). See docs/benchmarks.md.
#
#   make bench         every scenario, full size (~10-15 min on 2 cores); table on stdout,
#                      JSON in bench/results/ (timestamped + latest.json), plot bench/results/efficiency.png
#   make bench-quick   the short version (< 3 min)
#   make bench-profile where the workers' CPU goes at W = 128 (py-spy), and one job's ramp and tail
#   BENCH_ARGS="--only fanout,asyncio" make bench   a subset
#
# tests/integration/test_bench_smoke.py (part of `make test`) runs a tiny configuration.

BENCH_ARGS ?=

.PHONY: bench bench-quick bench-profile

bench: $(VENV_STAMP) ## benchmarks against named baselines (table + bench/results/*.json + plot)
	$(UV) run --frozen python -m bench.run $(BENCH_ARGS)

bench-quick: $(VENV_STAMP) ## the short benchmark run (< 3 min)
	$(UV) run --frozen python -m bench.run --quick $(BENCH_ARGS)

bench-profile: $(VENV_STAMP) ## profile the workers (py-spy) during W = 128 fan-out jobs: bench/results/profile_worker_w128.*
	$(UV) run --frozen python -m bench.profile_workers $(PROFILE_ARGS)
