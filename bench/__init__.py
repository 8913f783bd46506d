"""Benchmarks: figures taken with real servers and real clients; nothing here asserts a speed."""
