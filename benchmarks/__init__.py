"""Scripts that measure speed and print their figures: `python -m benchmarks.bench_x` or `python benchmarks/bench_x.py`."""
