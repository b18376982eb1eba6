"""The classic classifiers of the ``facenet`` and ``triplet`` families: scikit-learn
classifiers fitted on the training frames of an embedding space (raw FaceNet or the
triplet network's), saved per method, and scored into ``predictions/<space>__<clf>.csv``
and the results rows.

* :func:`make_classifier` builds one of :data:`dflib.vocabulary.CLASSIFIERS`;
  :class:`MarginProbability` gives the SVC and the perceptron a P(fake) that ranks as their
  margin does.
* :func:`evaluate_classifiers` fits, saves and scores every classifier of one space.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from tqdm.auto import tqdm

from ... import evaluation, io, statistics
from ...paths import RunPaths
from ...vocabulary import CLASSIFIERS, embedding_method

KNN_K = 10


def has_both_classes(y: np.ndarray) -> bool:
    return len(np.unique(y)) == 2


def make_classifier(name: str, seed: int = 0, n_train: int | None = None) -> Any:
    """An unfitted scikit-learn estimator with ``predict_proba``.

    Scale-sensitive models standardise inside a Pipeline; SGD uses the logistic loss, and
    SVC and the perceptron give the logistic of their margin (:class:`MarginProbability`),
    so all give probabilities that rank as the model's own decision function does; kNN
    (k = 10, fewer if there are fewer training samples) works in the embedding's own
    metric, which is what the triplet loss shapes, so it is not standardised.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, Perceptron, SGDClassifier
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    if name == "sgd":
        return make_pipeline(StandardScaler(), SGDClassifier(loss="log_loss", random_state=seed))
    if name == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    if name == "rf":
        return RandomForestClassifier(n_estimators=200, random_state=seed, n_jobs=-1)
    if name == "knn":
        k = KNN_K if n_train is None else max(1, min(KNN_K, n_train))
        return KNeighborsClassifier(n_neighbors=k)
    if name == "svc":
        # SVC grows as n^2 to n^3: on full Celeb-DF (~150k frames) it is the one to leave out.
        return make_pipeline(StandardScaler(), MarginProbability(SVC(random_state=seed)))
    if name == "nb":
        return GaussianNB()
    if name == "perceptron":
        return make_pipeline(StandardScaler(), MarginProbability(Perceptron(random_state=seed)))
    if name == "tree":
        return DecisionTreeClassifier(random_state=seed)
    raise ValueError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIERS)}")


class MarginProbability(ClassifierMixin, BaseEstimator):
    """A margin classifier (SVC, perceptron) whose ``predict_proba`` is the logistic of its
    ``decision_function``: P(fake) ranks the samples as the model does and crosses 0.5 on
    its decision boundary.

    Platt scaling (``CalibratedClassifierCV``) was used here before, fitted on out-of-fold
    scores: on the demo those folds share videos, their scores ranked at chance (AUC 0.52),
    and the fitted sigmoid's slope came out inverted, so ``facenet/svc`` ranked the test
    videos at 0.29 while its own decision function ranked them at 0.70. A calibration may
    not reorder a classifier's scores; how calibrated these are is left to ``ece``."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, x: np.ndarray, y: np.ndarray) -> "MarginProbability":
        from sklearn.base import clone

        self.estimator_ = clone(self.estimator).fit(x, y)
        self.classes_ = self.estimator_.classes_
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return self.estimator_.decision_function(x)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        positive = expit(self.decision_function(x))  # the score of classes_[1]
        return np.column_stack([1.0 - positive, positive])

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.estimator_.predict(x)


def fake_probability(estimator: Any, x: np.ndarray) -> np.ndarray:
    """``P(fake)`` per row from a fitted estimator (the column of class 1); no rows give
    none (scikit-learn refuses an empty batch)."""
    if len(x) == 0:
        return np.zeros(0)
    proba = estimator.predict_proba(x)
    return np.clip(proba[:, list(estimator.classes_).index(1)], 0.0, 1.0).astype(float)


def classifier_path(run: RunPaths, method: str) -> Path:
    """``models/<space>/<classifier>.joblib`` of a method ``<space>/<classifier>``."""
    space, name = method.split("/", 1)
    return run.classifier_file(space, name)


def save_classifier(run: RunPaths, method: str, estimator: Any) -> Path:
    """Persist a fitted classifier atomically (joblib, scikit-learn's convention) so that
    ``dflib predict`` and the robustness stage can score new faces with it."""
    import joblib

    return io.atomic_write(classifier_path(run, method), lambda p: joblib.dump(estimator, p))


def load_classifier(run: RunPaths, method: str, stage: str = "train_triplet") -> Any:
    """The fitted classifier of ``method``; a clear error naming ``stage``, the stage that
    saves it, when it is missing or not whole."""
    import joblib

    target = classifier_path(run, method)
    if not target.is_file():
        raise FileNotFoundError(f"{target}: no fitted classifier for {method!r}; "
                                f"rerun stage '{stage}'")
    return joblib.load(io.require_whole(target, f"rerun stage '{stage}'"))


def evaluate_classifiers(run: RunPaths, space: str, names: Sequence[str], x_train: np.ndarray,
                         y_train: np.ndarray, x_test: np.ndarray, test_frames: pd.DataFrame,
                         test_videos: pd.DataFrame, aggregation: str = "mean",
                         threshold: float = 0.5, seed: int = 0,
                         progress: bool = True, x_val: np.ndarray | None = None,
                         val_frames: pd.DataFrame | None = None,
                         val_videos: pd.DataFrame | None = None,
                         scoring: statistics.Scoring = statistics.Scoring()) -> pd.DataFrame:
    """Fit each classifier on training frames, score the validation (when given) and test
    frames, write predictions ``<space>/<name>`` (frames and videos) and upsert their
    results rows; return the rows.

    ``test_frames`` (``video_id, frame_idx, label``) is aligned with ``x_test``, and
    ``val_frames`` with ``x_val``; ``test_videos`` and ``val_videos`` are those splits of
    the index, so a video without faces still gets its row (scored 0.5, status ``no_face``).
    """
    if not has_both_classes(np.asarray(y_train)):
        raise ValueError(f"{space}: the training frames lack a class; classifiers need both")
    evaluation.retire_methods(run, space, [embedding_method(space, name) for name in names])
    rows = []
    for name in tqdm(names, desc=f"{space} classifiers", unit="clf", disable=not progress):
        method = embedding_method(space, name)
        clf = make_classifier(name, seed=seed, n_train=len(y_train)).fit(x_train, y_train)
        save_classifier(run, method, clf)
        splits = [("test", x_test, test_frames, test_videos)]
        if x_val is not None:
            splits.append(("val", x_val, val_frames, val_videos))
        for split, x, keys, index in splits:
            frames = statistics.max_per_frame(keys.loc[:, ["video_id", "frame_idx", "label"]]
                                              .assign(score=fake_probability(clf, x)))
            videos = statistics.video_predictions(frames, index, rule=aggregation,
                                                  threshold=threshold)
            evaluation.write_predictions(run, method, videos, frames, split=split)
        rows.append(evaluation.score_method(run, method, threshold, scoring))
    return pd.concat(rows, ignore_index=True)


