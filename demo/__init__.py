"""The embedded demo: a small SD3-family model trained on emoji scenes (and the digit model of the
session tests), its training, its edit benchmark and the demo run, from the repository root:
``python -m demo.run_demo``, ``python -m demo.evaluate``, ``python -m demo.train``. Not part of the pack.
"""
