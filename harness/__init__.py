"""The tooling around the RF-Inversion pack, run from the repository root (``python -m harness.host ...``):

- ``host``: the real ComfyUI host, in-process and as a headless server; which tree and venv a run uses;
- ``workflow_api``: a UI graph (``workflows/*.json``) to the API prompt that the web UI would queue;
- ``exact_models``: models in the host's own classes with closed-form velocity fields, and tiny Flux;
- ``small_clip``: a small CLIP text encoder in ComfyUI's classes (the demo model's, and the tests');
- ``session``: the long-session driver on the demo model (the soak and its memory figure).

The pack itself (the repository root's ``__init__.py``, ``nodes/``, ``sampler/``) never imports it.
Only the standard library is imported at module level here and in ``host``: scripts/setup.sh runs
``python3 -m harness.host paths`` before the venv exists.
"""
