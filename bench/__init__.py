"""Benchmarks: each module prints the project's figure next to a baseline's measured in the same run
and writes its own section of docs/benchmarks.md."""
