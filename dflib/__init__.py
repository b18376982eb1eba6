"""dflib: the helper package of the deepfake metric-learning study.

One module per concern, in the layers of :data:`LAYERS` (docs/design.md, "Modules"): a
module imports only modules of its own layer or one above it, and no import circle forms
(tests/test_architecture.py checks both). The detector families are the subpackage
:mod:`dflib.detectors`, one module each. Nothing heavy (TensorFlow, torch) is imported
here, so ``import dflib`` stays cheap.
"""

__version__ = "0.1.0"

# The layers of the package, top (imported by all) to bottom: (name, modules, what lives
# there). Modules are named relative to dflib ("detectors.cnn"); "<family>" stands for every
# family module of dflib.detectors and "<module>_fields" for every section declaration
# (dflib/*_fields.py, dflib/detectors/models/*_fields.py).
# A family module's methods import the family's model code when called (see
# dflib.detectors.base): those late-bound imports are exempt from the rule, and checked
# on their own.
LAYERS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("leaves", ("__init__", "vocabulary", "io", "paths", "devices", "torch_first", "steptimes",
                "fields", "<module>_fields"),
     "the method-name grammar and every list of backbones, heads, clip models, classifiers "
     "and aggregations; atomic writes and fingerprints; every path of a run (RunPaths) and "
     "the run lock; the one resolver of device; the one torch-before-TensorFlow import "
     "guard; the clock of extraction's steps (dflib bench steps); Field, Stage and "
     "ProfileError; each profile section's fields, declared beside the module that reads "
     "them"),
    ("registry", ("detectors", "detectors.base", "detectors.<family>"),
     "the detector families: the Detector interface, one module per family (its names, "
     "stages and parameter sections, how it trains, re-scores and what it reads), and the "
     "registry that lists them and answers what a method name's family says"),
    ("profile", ("config",), "the schema, assembled from the _fields modules and the "
     "registry's stages, and its validation"),
    ("data", ("datasets", "synth", "video", "perturbations"),
     "dataset adapters and the dataset-folder check, the generated demo, decoding, the "
     "DeeperForensics-1.0 frame distortions"),
    ("scoring", ("statistics", "evaluation", "summaries"),
     "aggregation, ensembles, metrics, thresholds, intervals and DeLong's test; prediction "
     "files and the results table; stage outcome counts and failures"),
    ("faces", ("mtcnn", "face_extractor", "face_store", "faces", "embeddings", "cluster",
               "stage_inputs"),
     "batched MTCNN; the face extractor (which face of a frame is kept, the key-frame "
     "tracker); the face store (its file format, redo rules and reader); the faces stage's "
     "extraction run (decode-ahead, Dask); FaceNet / dlib embeddings, the Dask client; what "
     "the stages read (each video's faces and verdict) and how they score"),
    ("model code", ("detectors.models", "detectors.models.cnn", "detectors.models.batches",
                    "detectors.models.fitting", "detectors.models.cnn_training",
                    "detectors.models.clips", "detectors.models.cnn_features",
                    "detectors.models.sequences", "detectors.models.triplet",
                    "detectors.models.classifiers", "detectors.models.frequency",
                    "detectors.models.identity", "detectors.models.sbi",
                    "detectors.models.controls"),
     "Keras models and their custom layers; face batches and augmentation; fitting, seeding "
     "and training records of every Keras model; the families' training and re-scoring "
     "code (frame-CNN chunks, the frame CNN trained on self-blended images, 3D CNNs, the recurrent heads' feature cache and the heads, "
     "the triplet network and the classic classifiers, the frequency-artefact detectors, "
     "the training-free and identity controls)"),
    ("re-scoring", ("reload", "robustness", "predict"),
     "any trained method applied to new faces; the compression stage; dflib predict"),
    ("reporting", ("result_tables", "plots", "gradcam", "html_report"),
     "the paper-style tables, comparisons and breakdowns; figures; Grad-CAM; the HTML report"),
    ("running", ("stages", "notebooks", "bench", "cli", "__main__"),
     "the stage functions of the data, faces, robustness and report stages and the runner "
     "of the detector stages; papermill over the notebooks; benchmarks (dflib bench, out "
     "of the runtime path: only the command line's bench command imports it); the "
     "command line"),
)
