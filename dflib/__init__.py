"""dflib: the helper package of the deepfake metric-learning study.

Stages live in their own modules (datasets, synth, video, faces, ...); notebooks call them.
Nothing heavy (TensorFlow, torch) is imported here, so ``import dflib`` stays cheap.
"""

__version__ = "0.1.0"
