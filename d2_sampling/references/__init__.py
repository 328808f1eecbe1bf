"""
Slow, obviously-correct reference implementations that the tests and benchmarks compare the
fast algorithms against: plain loops written straight from each paper, and re-implementations
of MMDetection's algorithms (written from their documented behaviour, not copied).

Not for training: they are here, inside the package, so that ``tests/`` and ``benchmarks/``
import them the same way (``from d2_sampling.references.atss import ...``) without editing
``sys.path``. Importing this package imports none of its modules.
"""
