"""Benchmarks run serially (`tox -e bench`); under xdist pytest-benchmark runs each body once."""
