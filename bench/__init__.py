"""The benchmark suite: `make bench` (or `python -m bench`); see bench/README.md."""
