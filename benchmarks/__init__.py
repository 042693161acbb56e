"""Benchmarks: ``make bench`` runs them against the local test lab and prints figures."""
