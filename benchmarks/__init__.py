"""Benchmarks (not tests): run each as ``python -m benchmarks.<name>``; results go to
``benchmarks/results/``."""
