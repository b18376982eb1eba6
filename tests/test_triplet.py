"""The semi-hard triplet loss (against a brute-force NumPy reference, on the TensorFlow and
the torch backend), the balanced batches, training (NaN stop, resume) and the classifiers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pandas as pd
import pytest

from dflib import evaluation, statistics, vocabulary
from dflib.detectors.models import classifiers, triplet
from dflib.paths import RunPaths


def reference_loss(labels: np.ndarray, x: np.ndarray, margin: float = 1.0) -> float:
    """The loss by its definition, one anchor-positive pair at a time, in float64."""
    y = np.asarray(labels).ravel()
    x = np.asarray(x, dtype=np.float64)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    losses = []
    for a in range(len(y)):
        negatives = [d[a, n] for n in range(len(y)) if y[n] != y[a]]
        if not negatives:
            continue  # no triplet for this anchor: documented as no loss
        for p in range(len(y)):
            if p == a or y[p] != y[a]:
                continue
            farther = [dn for dn in negatives if dn > d[a, p]]
            d_an = min(farther) if farther else max(negatives)
            losses.append(max(d[a, p] - d_an + margin, 0.0))
    return float(np.mean(losses)) if losses else 0.0


def reference_shares(labels: np.ndarray, x: np.ndarray, margin: float = 1.0) -> tuple[float, float]:
    """(share of anchor-positive pairs with a loss, share that found a semi-hard negative),
    one pair at a time, over the pairs whose anchor has a negative."""
    y = np.asarray(labels).ravel()
    x = np.asarray(x, dtype=np.float64)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    active, found = [], []
    for a in range(len(y)):
        negatives = [d[a, n] for n in range(len(y)) if y[n] != y[a]]
        if not negatives:
            continue
        for p in range(len(y)):
            if p == a or y[p] != y[a]:
                continue
            farther = [dn for dn in negatives if dn > d[a, p]]
            d_an = min(farther) if farther else max(negatives)
            active.append(d[a, p] - d_an + margin > 0)
            found.append(bool(farther))
    return (float(np.mean(active)), float(np.mean(found))) if active else (0.0, 0.0)


def random_batches(n: int = 24, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """Batches of varied size, dimension, scale, class balance and margin; some on an
    integer grid, so that exact distance ties test the strict 'farther than' rule."""
    rng = np.random.default_rng(seed)
    batches = []
    for i in range(n):
        b, dim = int(rng.integers(2, 48)), int(rng.integers(1, 20))
        y = (rng.random(b) < rng.uniform(0.1, 0.9)).astype(np.int64)
        x = rng.normal(scale=rng.uniform(0.05, 3.0), size=(b, dim))
        if i % 4 == 0:
            x = rng.integers(-2, 3, size=(b, dim)).astype(float)
        batches.append((y, x.astype(np.float32), float(rng.choice([0.2, 1.0, 2.5]))))
    return batches


def loss_value(y, x, margin=1.0) -> float:
    return float(keras.ops.convert_to_numpy(triplet.semi_hard_triplet_loss(y, x, margin)))


# --------------------------------------------------------------------------- loss

def test_loss_matches_the_reference_on_this_backend():
    for y, x, margin in random_batches():
        assert loss_value(y, x, margin) == pytest.approx(reference_loss(y, x, margin), abs=1e-5)


TORCH_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    from dflib.detectors.models import triplet
    assert keras.backend.backend() == "torch"
    out = []
    for y, x, margin in json.load(sys.stdin):
        x = keras.ops.convert_to_tensor(np.asarray(x, dtype="float32"))
        x.requires_grad_(True)
        loss = triplet.semi_hard_triplet_loss(np.asarray(y), x, margin)
        loss.backward()
        out.append([float(loss), bool(np.isfinite(x.grad.numpy()).all())])
    print(json.dumps(out))
""")


def test_loss_matches_the_reference_on_the_torch_backend():
    # Keras fixes its backend at import, so the torch backend runs in a fresh process.
    edge = [(np.zeros(5, int), np.ones((5, 3), np.float32), 1.0),
            (np.array([0, 0, 1, 1]), np.zeros((4, 3), np.float32), 1.0)]
    batches = random_batches(8, seed=1) + edge
    payload = json.dumps([[y.tolist(), x.tolist(), m] for y, x, m in batches])
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    done = subprocess.run([sys.executable, "-c", TORCH_SCRIPT], input=payload, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for (y, x, margin), (value, finite_grad) in zip(batches, results):
        assert value == pytest.approx(reference_loss(y, x, margin), abs=1e-5)
        assert finite_grad


@pytest.mark.parametrize("y, x, expected", [
    (np.zeros(6), np.random.default_rng(0).normal(size=(6, 4)), 0.0),  # one class
    (np.array([0, 1, 2, 3]), np.random.default_rng(1).normal(size=(4, 4)), 0.0),  # no pairs
    (np.array([0, 0, 1, 1]), np.ones((4, 4)), 1.0),  # all duplicates: d = 0 -> margin
    (np.array([0, 1, 0, 1]), np.zeros((4, 8)), 1.0),  # all zero
])
def test_loss_edge_cases_are_finite_and_defined(y, x, expected):
    assert loss_value(y, x.astype(np.float32)) == pytest.approx(expected)


def test_nan_embeddings_are_not_hidden_by_the_loss():
    x = np.ones((4, 3), np.float32)
    x[1, 0] = np.nan
    assert np.isnan(loss_value(np.array([0, 0, 1, 1]), x))


def test_edge_cases_train_without_nan():
    # gradients through duplicate and all-zero embeddings stay finite
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=triplet.SemiHardTripletLoss())
    for x, y in ((np.zeros((6, 4)), np.array([0, 1] * 3)), (np.ones((6, 4)), np.zeros(6)),
                 (np.ones((6, 4)), np.array([0, 1] * 3))):
        loss = model.train_on_batch(x.astype(np.float32), y.astype(np.float32))
        assert np.isfinite(loss)
    assert all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in model.weights)


def test_active_and_semi_hard_shares_match_the_reference():
    for y, x, margin in random_batches(12, seed=5):
        active, found = reference_shares(y, x, margin)
        got = [float(keras.ops.convert_to_numpy(f(y, x, margin)))
               for f in (triplet.active_triplet_share, triplet.semi_hard_share)]
        assert got == pytest.approx([active, found], abs=1e-6)
    # a space that separates the classes by more than the margin leaves no active triplet
    y = np.array([0, 0, 0, 1, 1, 1])
    x = np.c_[10.0 * y, np.zeros(6)].astype(np.float32)
    assert float(keras.ops.convert_to_numpy(triplet.active_triplet_share(y, x))) == 0.0


def test_loss_class_is_the_function_and_serialises():
    y, x, _ = random_batches(1, seed=3)[0]
    loss = triplet.SemiHardTripletLoss(margin=0.5)
    assert float(keras.ops.convert_to_numpy(loss(y, x))) == pytest.approx(loss_value(y, x, 0.5))
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, triplet.SemiHardTripletLoss) and again.margin == 0.5


# --------------------------------------------------------------------------- batches

@pytest.mark.parametrize("n_real, n_fake, batch", [(50, 50, 16), (10, 200, 32), (3, 40, 32),
                                                    (1, 5, 2), (7, 3, 256)])
def test_every_batch_holds_both_classes(n_real, n_fake, batch):
    y = np.array([0] * n_real + [1] * n_fake)
    data = triplet.BalancedBatches(np.arange(len(y))[:, None], y, batch, seed=0)
    assert len(data) == -(-len(y) // batch)
    for _ in range(3):
        for i in range(len(data)):
            xb, yb = data[i]
            counts = np.bincount(yb.astype(int), minlength=2)
            assert counts.min() >= 1 and len(yb) <= batch
            assert counts.min() == min(batch // 2, n_real, n_fake)  # half each when possible
            np.testing.assert_array_equal(y[xb[:, 0].astype(int)], yb)  # rows stay paired
        data.on_epoch_end()


def test_batches_are_seeded_and_validation_batches_stay_fixed():
    y = np.array([0] * 30 + [1] * 70)
    x = np.arange(100, dtype=np.float32)[:, None]
    a, b = (triplet.BalancedBatches(x, y, 20, seed=4) for _ in range(2))
    np.testing.assert_array_equal(a[0][0], b[0][0])
    first = a[0][0].copy()
    a.on_epoch_end()
    assert not np.array_equal(a[0][0], first)
    val = triplet.BalancedBatches(x, y, 20, seed=4, shuffle=False)
    before = val[1][0].copy()
    val.on_epoch_end()
    np.testing.assert_array_equal(val[1][0], before)
    # the smaller class is used in full before any of it repeats
    seen = np.concatenate([val[i][0][val[i][1] == 0, 0] for i in range(2)])
    assert len(np.unique(seen)) == len(seen) == 20


def test_batches_refuse_a_missing_class():
    with pytest.raises(ValueError, match="real"):
        triplet.BalancedBatches(np.zeros((5, 2)), np.ones(5), 4)


# --------------------------------------------------------------------------- training

def clusters(n: int, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping Gaussian clouds, fake shifted from real."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3 == 0).astype(np.int64)
    x = rng.normal(size=(n, dim)) + 1.5 * y[:, None]
    return x.astype(np.float32), y


TRAIN = {"epochs": 3, "batch_size": 32, "learning_rate": 1e-3, "margin": 1.0,
         "dropout": 0.1, "seed": 0, "verbose": 0}


def test_mlp_has_the_original_shape():
    model = triplet.build_mlp(512, dropout=0.1)
    dense = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert dense == [256, 256, 128, 64]
    assert all(layer.rate == 0.1 for layer in model.layers
               if isinstance(layer, keras.layers.Dropout))


def test_training_saves_logs_and_reloads_a_finished_model(tmp_path):
    run = RunPaths(tmp_path).ensure()
    x, y = clusters(120)
    xv, yv = clusters(40, seed=1)
    first = triplet.train(run, x, y, xv, yv, **TRAIN)
    assert first.trained
    assert run.top_model_files(triplet.MODEL_NAME)[0].is_file()
    assert {"epoch", "loss", "val_loss", "active_triplets", "val_active_triplets", "semi_hard",
            "val_semi_hard"} <= set(first.history.columns)
    z = triplet.transform(first.model, xv)
    assert z.shape == (40, triplet.EMBEDDING_DIM) and np.isfinite(z).all()

    again = triplet.train(run, x, y, xv, yv, **TRAIN)
    assert not again.trained
    np.testing.assert_allclose(triplet.transform(again.model, xv), z, atol=1e-5)
    changed = triplet.train(run, x, y, xv, yv, **{**TRAIN, "epochs": 1})
    assert changed.trained and len(changed.history) == 1


def test_every_epoch_runs_and_the_last_epochs_weights_are_kept(tmp_path):
    """The validation faces carry the opposite labels of the training clusters, so their
    loss is lowest before training: early stopping with restored weights (this module's
    old schedule) stopped there and kept a near-initial network (issue 27)."""
    run = RunPaths(tmp_path).ensure()
    x, y = clusters(120)
    xv, yv = clusters(60, seed=1)
    out = triplet.train(run, x, y, xv, 1 - yv, **{**TRAIN, "epochs": 5})
    log = out.history
    assert len(log) == 5 and log["val_loss"].idxmin() < 4  # epoch 5 is not the best
    batches = triplet.BalancedBatches(xv, 1 - yv, TRAIN["batch_size"], shuffle=False)
    kept = np.mean([loss_value(yb, triplet.transform(out.model, xb)) for xb, yb in
                    (batches[i] for i in range(len(batches)))])
    assert kept == pytest.approx(log["val_loss"].iloc[-1], rel=1e-4)
    assert log["active_triplets"].iloc[-1] < log["active_triplets"].iloc[0]
    from dflib import plots

    fig = plots.triplet_training_figure(log)
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]
    assert legends == [["train", "validation"], ["active train", "active validation",
                                                 "semi-hard found train",
                                                 "semi-hard found validation"]]


def test_unit_length_embeddings_lie_on_the_sphere(tmp_path):
    x, y = clusters(90)
    out = triplet.train(RunPaths(tmp_path).ensure(), x, y, x[:0], y[:0],
                        **{**TRAIN, "epochs": 1, "margin": 0.2, "unit_length": True})
    norms = np.linalg.norm(triplet.transform(out.model, x), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_embeddings_of_other_videos_retrain_the_network_and_say_why(tmp_path, capsys):
    run = RunPaths(tmp_path).ensure()
    x, y = clusters(60)
    xv, yv = clusters(20, seed=1)
    args = {**TRAIN, "epochs": 1}
    triplet.train(run, x, y, xv, yv, **args, inputs={"train": ["a", "b"], "val": ["c"]})
    capsys.readouterr()
    again = triplet.train(run, x, y, xv, yv, **args, inputs={"train": ["a"], "val": ["c"]})
    assert again.trained
    assert "triplet: trained on other videos (1 removed), retraining" in capsys.readouterr().out


def test_validation_without_both_classes_falls_back_to_the_training_loss(tmp_path):
    x, y = clusters(60)
    out = triplet.train(RunPaths(tmp_path).ensure(), x, y, x[:0], y[:0], **{**TRAIN, "epochs": 1})
    assert "val_loss" not in out.history.columns and "active_triplets" in out.history.columns


@pytest.mark.parametrize("learning_rate", [1e38, 1e30])
def test_a_nan_loss_stops_training_with_a_clear_message(tmp_path, learning_rate):
    # One Adam step of this size sends the weights past float32's range. Whether the loss
    # or the weights are seen non-finite first depends on the machine's kernels, so only
    # the promise is asserted: NaNLossError, naming the epoch, batch size and learning rate.
    x, y = clusters(64)
    with pytest.raises(triplet.NaNLossError,
                       match=r"(the loss became (nan|-?inf) at batch \d+|the weights became NaN or infinite)"
                             r" in epoch 1.*batch_size=32.*learning_rate="
                             + re.escape(f"{learning_rate:g}")):
        triplet.train(RunPaths(tmp_path).ensure(), x, y, x[:0], y[:0],
                      **{**TRAIN, "learning_rate": learning_rate})
    assert not RunPaths(tmp_path).top_model_files(triplet.MODEL_NAME)[0].exists()


# --------------------------------------------------------------------------- classifiers

@pytest.mark.parametrize("name", vocabulary.CLASSIFIERS)
def test_classifiers_give_probabilities_of_fake(name):
    x, y = clusters(90)
    clf = classifiers.make_classifier(name, seed=0, n_train=len(y)).fit(x, y)
    p = classifiers.fake_probability(clf, x)
    assert p.shape == (90,) and ((p >= 0) & (p <= 1)).all()
    assert p[y == 1].mean() > p[y == 0].mean()


@pytest.mark.parametrize("name", ["svc", "perceptron"])
@pytest.mark.parametrize("seed", range(4))
def test_a_margin_classifiers_probability_ranks_as_its_decision_function(name, seed):
    """P(fake) of the SVC and the perceptron is an increasing function of the model's own
    margin, 0.5 on its boundary. Labels without signal are where Platt scaling on
    out-of-fold scores came out inverted (at these seeds, for both models) and turned a
    detector's ranking upside down."""
    from sklearn.linear_model import Perceptron
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(60, 5)), np.repeat([0, 1], [20, 40])
    margin_model = make_pipeline(StandardScaler(), {"svc": SVC, "perceptron": Perceptron}[name](
        random_state=0)).fit(x, y)
    margin = margin_model.decision_function(x)
    p = classifiers.fake_probability(classifiers.make_classifier(name, seed=0).fit(x, y), x)
    order = np.argsort(margin, kind="stable")
    assert (np.diff(p[order]) >= 0).all() and p[order[-1]] > p[order[0]]
    assert ((p > 0.5) == (margin_model.predict(x) == 1)).all()


def test_evaluate_classifiers_writes_predictions_and_results(tmp_path):
    run = RunPaths(tmp_path).ensure()
    x, y = clusters(60)
    labels = np.repeat([0, 1, 0, 1], 3)  # four test videos of three frames
    xt = (np.random.default_rng(2).normal(size=(12, 16)) + 1.5 * labels[:, None]).astype(np.float32)
    frames = pd.DataFrame({"video_id": np.repeat(["v0", "v1", "v2", "v3"], 3),
                           "frame_idx": np.tile([0, 1, 2], 4), "label": labels})
    # v4 is a test video where no face was found
    videos = pd.DataFrame({"video_id": ["v0", "v1", "v2", "v3", "v4"], "label": [0, 1, 0, 1, 1]})
    rows = classifiers.evaluate_classifiers(run, "facenet", ["logreg", "knn"], x, y, xt, frames,
                                        videos, seed=0, progress=False)
    assert set(zip(rows["method"], rows["level"])) == {
        (m, lvl) for m in ("facenet/logreg", "facenet/knn") for lvl in ("frame", "video")}
    table = evaluation.results_table(run)
    assert set(table["method"]) == {"facenet/logreg", "facenet/knn"}
    video_rows, frame_rows = evaluation.read_predictions(run, "facenet/knn")
    assert len(frame_rows) == 12 and video_rows["score"].between(0, 1).all()
    no_face = video_rows.set_index("video_id").loc["v4"]
    assert no_face["status"] == statistics.STATUS_NO_FACE and no_face["score"] == 0.5


# --------------------------------------------------------------------------- the stage

def fake_embedding_run(tmp_path) -> tuple[RunPaths, pd.DataFrame]:
    """A run with an index and stored 512-d embeddings (fakes of two methods, shifted),
    as stage 06 writes them; one test video has no faces."""
    from dflib import embeddings, io

    run = RunPaths(tmp_path).ensure()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        split = ("train", "train", "val", "test")[i % 4]
        label = int(i % 3 != 0)
        method = ("real", "swap", "blend")[i % 3]
        rows.append({"video_id": f"{method}_{i}", "label": label, "split": split,
                     "method": method})
        k = 0 if i == 23 else 4
        x = rng.normal(size=(k, embeddings.DIM)) + 0.4 * label
        io.write_npz(run.embeddings_file(f"{method}_{i}"), emb=x.astype(np.float32),
                     frame_idx=np.arange(k), config=np.array("test"))
    run.embeddings_manifest.write_text(json.dumps({"requested": "none", "used": "random",
                                                         "reason": "test"}))
    return run, pd.DataFrame(rows)


def test_run_stage_trains_scores_and_feeds_the_figures(tmp_path):
    run, videos = fake_embedding_run(tmp_path)
    params = {**{k: v for k, v in TRAIN.items() if k not in ("seed", "verbose")},
              "unit_length": False,
              "classifiers": ["logreg", "nb"], "aggregation": "mean", "threshold": 0.5}
    result = triplet.run_stage(run, videos, params, seed=0, progress=False)
    assert result.embeddings["used"] == "random" and result.training.trained
    assert result.training.history["loss"].iloc[-1] < result.training.history["loss"].iloc[0]
    methods = {f"{s}/{c}" for s in ("facenet", "triplet") for c in ("logreg", "nb")}
    table = evaluation.results_table(run)
    assert set(table["method"]) == methods and set(table["level"]) == {"frame", "video"}
    assert (table.loc[table["level"] == "video", "n"] == 6).all()  # the face-less one counts
    assert len(result.test_frames) == len(result.test_facenet) == len(result.test_triplet) == 20

    compared = triplet.comparison_table(result.results)
    assert compared["classifier"].tolist() == ["logreg", "nb"]
    assert list(compared.columns) == ["classifier", "facenet_acc", "triplet_acc",
                                      "facenet_auc", "triplet_auc"]
    sample = triplet.tsne_inputs(result, max_points=12, seed=0)
    assert sample["before"].shape == (12, 512) and sample["after"].shape == (12, 64)
    every = triplet.tsne_inputs(result, max_points=1000, seed=0)
    assert len(every["labels"]) == 20
    assert set(every["hue"]) == {"real", "swap", "blend"}  # fakes of two methods: by method
