"""The pack's benchmarks in the real host (overhead, accuracy per network call, memory), run from the
repository root as ``python -m benchmarks.run``. Not part of the pack.
"""
