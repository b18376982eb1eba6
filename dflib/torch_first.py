"""The one import-order guard of the study: importing this module loads torchvision.

A process that uses both facenet-pytorch (which loads torchvision) and TensorFlow must load
torchvision first; TensorFlow followed by torchvision segfaults on this stack (docs/traps.md,
"torch before TensorFlow"). A module or test process that needs both imports this module
before anything that imports Keras.
"""

import torchvision  # noqa: F401
