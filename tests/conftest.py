"""Shared test set-up. Tests build their data in temporary folders; nothing is downloaded."""

from __future__ import annotations

import os

# Quiet TensorFlow and keep it off any GPU, before anything imports it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# torchvision must be imported before TensorFlow in one process, or it segfaults
# (TensorFlow 2.21, torchvision 0.29); test modules import both, in any order.
import torchvision  # noqa: E402, F401
