"""Shared fixtures. Tests build their data in temporary folders; nothing is downloaded."""

from __future__ import annotations

import os

# Keep TensorFlow quiet and on the CPU, and torch single-threaded, for every test process.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
