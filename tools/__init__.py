"""Tools that use the frcnn library without being part of it: the benchmark against torchvision.

Run them from the repository root: `python benchmark.py ...` (or `python -m tools.benchmark ...`).
"""
