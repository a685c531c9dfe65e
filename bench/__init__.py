"""Benchmark the production server against the seed's FastAPI + torch design.

Run `make bench` (or `python -m bench.run` from a train + bench environment);
see bench/run.py for what is measured and how.
"""
