"""Scripts that measure speed and print their figures: `python -m benchmarks.bench_x` from the checkout's root."""
