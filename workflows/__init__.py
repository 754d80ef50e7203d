"""The shipped workflows (the JSON files here) and their builder, run from the repository root as
``python -m workflows.make_workflows``. ComfyUI serves this folder's JSON files as the pack's templates;
the pack never imports this package.
"""
