"""Benchmarks of the console: ``make bench`` (``python -m bench``).

See ``bench/README.md`` for what each one measures and its target.
"""
