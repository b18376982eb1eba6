"""dflib: the helper package of the deepfake metric-learning study.

A flat package, one module per concern (docs/design.md, "Modules"): leaves first
(``vocabulary``, ``io``, ``paths``, ``devices``, ``torch_first``, ``fields`` and the
``<module>_fields`` declarations of each profile section), then the profile (``config``), data, faces, one model module per detector family, evaluation, reporting,
and the stage functions of ``stages`` that the notebooks call. A module imports only
modules of its own layer or one above it. Nothing heavy (TensorFlow, torch) is imported
here, so ``import dflib`` stays cheap.
"""

__version__ = "0.1.0"
