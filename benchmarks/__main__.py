"""``python -m benchmarks``: run every benchmark and print its figures."""

print("no benchmarks yet")
