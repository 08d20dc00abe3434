"""Benchmarks of the suite; ``python -m benchmarks [NAME ...]`` runs them (all by default)."""
