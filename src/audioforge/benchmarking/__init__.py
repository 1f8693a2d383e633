"""Benchmarks that compare audioforge with its peers in one run (see benchmarks/ and BENCHMARKS.md)."""
