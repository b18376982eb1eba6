"""The detector families' model code: Keras networks and their custom layers, face
batches, fitting and training records, and each family's training and re-scoring code,
called by the family modules of :mod:`dflib.detectors` when they train or re-score.
Heavy (TensorFlow); the package itself imports nothing, so the ``<module>_fields``
declarations here stay light."""
