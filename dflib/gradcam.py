"""Grad-CAM heatmaps of the frame CNNs: where in a face the detector sees "fake".

The models of :mod:`dflib.detectors.models.cnn` nest their keras.applications backbone as one layer of
the outer model, so the backbone's last feature map is not a tensor of the outer graph:
``keras.Model(model.inputs, [backbone.get_layer(name).output, ...])`` fails ("disconnected
graph"). :func:`cam_model` therefore splits the backbone into a sub-model with two
outputs (the feature map and the backbone's own output) and re-calls the outer layers
around it, sharing every weight. Flat models (feature map at the top level) are wired
directly. The class score is the logit of P(fake), read before the final softmax or
sigmoid as Grad-CAM prescribes, so confident predictions do not vanish into saturated
gradients.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import keras
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import tensorflow as tf

from .detectors.models.cnn import load_model
from .detectors.models.cnn_training import latest_manifest
from .face_store import FaceStore
from .paths import RunPaths
from .plots import LABEL_NAMES

# Absolute tolerance between the rebuilt model's P(fake) and the original model's output.
_REBUILD_ATOL = 1e-4


def _is_4d(layer: keras.layers.Layer) -> bool:
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):  # a layer never called has no output
        return False


def _backbone(model: keras.Model) -> keras.Model | None:
    """The last nested sub-model of ``model`` (the keras.applications backbone), if any."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return nested[-1] if nested else None


def find_conv_layer(model: keras.Model, layer_name: str | None = None
                    ) -> tuple[keras.Model | None, keras.layers.Layer]:
    """``(backbone or None, layer)``: the feature-map layer Grad-CAM reads.

    By default the last layer with a 4-D output inside the nested backbone (or, for a flat
    model, at the top level); ``layer_name`` picks another, searched at the top level
    first, then inside the backbone. ``backbone`` is None when the layer is top-level.
    """
    base = _backbone(model)
    if layer_name is None:
        owner = base if base is not None else model
        candidates = [layer for layer in owner.layers if _is_4d(layer)]
        if not candidates:
            raise ValueError(f"model {model.name!r} has no layer with a 4-D output")
        return (base, candidates[-1])
    top = {layer.name: layer for layer in model.layers}
    if layer_name in top:
        layer, owner = top[layer_name], None
    elif base is not None and layer_name in {layer.name for layer in base.layers}:
        layer, owner = base.get_layer(layer_name), base
    else:
        raise ValueError(f"layer {layer_name!r} is not in model {model.name!r} or its backbone")
    if not _is_4d(layer):
        raise ValueError(f"layer {layer_name!r} outputs shape {layer.output.shape}, not a "
                         "4-D feature map")
    return owner, layer


def cam_model(model: keras.Model, layer_name: str | None = None) -> keras.Model:
    """A model sharing ``model``'s weights with outputs ``[feature_map, logit_of_fake]``.

    ``model`` must end in a Dense layer with a 2-way softmax (column 1 = fake, as
    :mod:`dflib.detectors.models.cnn` builds) or a 1-unit sigmoid. With a nested backbone, the layers of
    ``model`` must form a chain (each layer feeds the next), which holds for every model
    :func:`dflib.detectors.models.cnn.build_model` makes.
    """
    head = model.layers[-1]
    activation = (keras.activations.serialize(head.activation)
                  if isinstance(head, keras.layers.Dense) else None)
    if (activation, getattr(head, "units", None)) not in (("softmax", 2), ("sigmoid", 1)):
        raise ValueError(f"model {model.name!r}: last layer {head.name!r} must be Dense with a "
                         "2-way softmax or a 1-unit sigmoid for a fake score")
    owner, layer = find_conv_layer(model, layer_name)
    if owner is None:
        conv, penultimate = layer.output, head.input
        inputs = model.inputs
    else:
        split = keras.Model(owner.inputs, [layer.output, owner.output], name=f"{owner.name}_cam")
        inputs = keras.Input(model.input_shape[1:], name="faces")
        x = inputs
        # The head is applied below without its activation, to read logits.
        for each in model.layers[:-1]:
            if isinstance(each, keras.layers.InputLayer):
                continue
            try:
                if each is owner:
                    conv, x = split(x)
                else:
                    x = each(x)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"model {model.name!r}: cannot rebuild it around its nested "
                                 f"backbone, layer {each.name!r} does not take the previous "
                                 f"layer's output ({exc})") from None
        penultimate = x
    z = keras.ops.matmul(penultimate, head.kernel) + head.bias
    logit = z[:, 1] - z[:, 0] if activation == "softmax" else z[:, 0]  # log-odds of fake
    return keras.Model(inputs, [conv, logit], name=f"{model.name}_gradcam")


def gradcam(model: keras.Model, faces: np.ndarray, layer_name: str | None = None,
            batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of class "fake" for ``faces`` (uint8 or float RGB ``[n, h, w, 3]``, 0-255).

    Returns ``(heatmaps float32 [n, h, w] in [0, 1], scores float32 [n])`` where scores
    are the model's P(fake). Per face: channel weights = mean gradient of the fake logit
    over the feature map, heatmap = ReLU(weighted sum of channels), divided by its
    maximum (all zeros when nothing speaks for fake) and resized bilinearly to the face.
    """
    faces = np.asarray(faces)
    if faces.ndim != 4 or faces.shape[-1] != 3:
        raise ValueError(f"faces must be [n, h, w, 3] RGB, got shape {faces.shape}")
    if not len(faces):
        return np.zeros((0, *faces.shape[1:3]), np.float32), np.zeros(0, np.float32)
    explain = cam_model(model, layer_name)
    heatmaps, scores = [], []
    for start in range(0, len(faces), batch_size):
        x = tf.convert_to_tensor(faces[start:start + batch_size], dtype=tf.float32)
        with tf.GradientTape() as tape:
            conv, logit = explain(x, training=False)
        grads = tape.gradient(logit, conv)  # samples are independent: d sum / d A_i = d logit_i
        conv, grads = tf.cast(conv, tf.float32), tf.cast(grads, tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * conv, axis=-1))
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        cam = tf.math.divide_no_nan(cam, peak)
        cam = tf.image.resize(cam[..., None], faces.shape[1:3], method="bilinear")[..., 0]
        heatmaps.append(np.clip(cam.numpy(), 0.0, 1.0))
        scores.append(tf.sigmoid(tf.cast(logit, tf.float32)).numpy())
    # The rebuilt graph must be the model: a model that is not a chain would otherwise
    # silently explain something else.
    if not np.allclose(scores[0], _fake_probability(model, faces[:batch_size]),
                       atol=_REBUILD_ATOL):
        raise ValueError(f"model {model.name!r}: the Grad-CAM rebuild does not reproduce its "
                         "predictions (is it a chain of layers?)")
    return np.concatenate(heatmaps).astype(np.float32), np.concatenate(scores).astype(np.float32)


def _fake_probability(model: keras.Model, faces: np.ndarray) -> np.ndarray:
    out = keras.ops.convert_to_numpy(model(tf.convert_to_tensor(faces, tf.float32),
                                           training=False))
    return out[:, 1] if out.shape[-1] == 2 else out[:, 0]


def overlay(face: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45,
            cmap: str = "jet") -> np.ndarray:
    """The face (uint8 RGB) blended with the heatmap in ``cmap`` colours; uint8 RGB."""
    colours = plt.get_cmap(cmap)(np.clip(heatmap, 0.0, 1.0))[..., :3] * 255.0
    blend = (1.0 - alpha) * np.asarray(face, dtype=np.float32) + alpha * colours
    return np.clip(blend, 0, 255).astype(np.uint8)


def gradcam_grid_figure(faces: np.ndarray, heatmaps: np.ndarray, labels: np.ndarray,
                        scores: np.ndarray, pairs_per_row: int = 4, alpha: float = 0.45,
                        title: str = "") -> plt.Figure:
    """Each face beside its Grad-CAM overlay, ``pairs_per_row`` pairs per row; the face
    is titled with its true class and the model's fake score."""
    labels, scores = np.asarray(labels), np.asarray(scores)
    n = len(faces)
    if not len(heatmaps) == len(labels) == len(scores) == n:
        raise ValueError(f"{n} faces but {len(heatmaps)} heatmaps, {len(labels)} labels and "
                         f"{len(scores)} scores")
    pairs_per_row = max(1, min(pairs_per_row, n))
    rows = max(1, -(-n // pairs_per_row))
    fig, axes = plt.subplots(rows, 2 * pairs_per_row, squeeze=False,
                             figsize=(2.0 * 2 * pairs_per_row, 2.5 * rows))
    for ax in axes.flat:
        ax.axis("off")
    if n == 0:
        axes.flat[0].text(0.5, 0.5, "no faces to explain", ha="center", va="center",
                          transform=axes.flat[0].transAxes)
    for i in range(n):
        ax_face, ax_cam = axes[i // pairs_per_row, 2 * (i % pairs_per_row):][:2]
        ax_face.imshow(faces[i])
        ax_face.set_title(f"{LABEL_NAMES[int(labels[i])]} · fake {float(scores[i]):.2f}",
                          fontsize=8)
        ax_cam.imshow(overlay(faces[i], heatmaps[i], alpha))
        ax_cam.set_title("Grad-CAM", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def pick_faces(run: RunPaths, per_class: int, seed: int = 0, split: str = "test"
               ) -> tuple[np.ndarray, pd.DataFrame]:
    """``per_class`` real then ``per_class`` fake faces of ``split``, one per video.

    Videos with a face are drawn by a seeded generator (from a table sorted by video id,
    so the draw does not depend on file order), then one of each video's faces. Returns
    ``(faces uint8 [k, s, s, 3], table with video_id, label, frame_idx)``; a class with
    fewer videos gives fewer faces, a class with none gives none, with a warning (an empty
    or one-class split still gets its figure).
    """
    store = FaceStore(run)
    summary = store.summary()
    usable = summary[(summary["split"] == split) & (summary["n_faces"] > 0)]
    usable = usable.sort_values("video_id", kind="stable")
    rng = np.random.default_rng(seed)
    faces, rows = [], []
    for label in (0, 1):
        videos = usable.loc[usable["label"] == label, "video_id"].to_numpy()
        if not len(videos):
            warnings.warn(f"no {LABEL_NAMES[label]} {split} video with a face in "
                          f"{run.faces_summary_csv}: none shown", stacklevel=2)
            continue
        for video_id in rng.choice(videos, size=min(per_class, len(videos)), replace=False):
            crops, frame_idx = store.load(str(video_id))
            j = int(rng.integers(len(crops)))
            faces.append(crops[j])
            rows.append({"video_id": str(video_id), "label": label, "frame_idx": int(frame_idx[j])})
    table = pd.DataFrame(rows, columns=["video_id", "label", "frame_idx"])
    return (np.stack(faces) if faces else np.zeros((0, 1, 1, 3), np.uint8)), table


@dataclass
class Explanation:
    """Grad-CAM of a run's frame CNN on a few test faces: what :func:`gradcam_grid_figure`
    draws."""

    faces: np.ndarray  # uint8 [k, s, s, 3]
    heatmaps: np.ndarray  # float [k, h, w] in 0-1
    labels: np.ndarray  # 0 real, 1 fake
    scores: np.ndarray  # the model's P(fake)
    title: str


def explain_section(run: RunPaths, shared: Mapping[str, Any], section: Mapping[str, Any]
                    ) -> Explanation:
    """:func:`explain_cnn` with a validated profile's shared keys and ``report`` section
    (:data:`dflib.gradcam_fields.REPORT`)."""
    return explain_cnn(run, section["gradcam_per_class"], shared["seed"],
                       section["gradcam_layer"] or None)


def explain_cnn(run: RunPaths, per_class: int, seed: int = 0,
                layer_name: str | None = None) -> Explanation:
    """Grad-CAM of chunk 0 of the run's latest frame-CNN training (the ``cnn/<arch>``
    model) on ``per_class`` real and fake test faces (:func:`pick_faces`)."""
    manifest = latest_manifest(run)
    model = load_model(run.artifact(manifest["chunk_models"][0]["model"]))
    faces, picked = pick_faces(run, per_class, seed)
    heatmaps, scores = gradcam(model, faces, layer_name)
    return Explanation(faces, heatmaps, picked["label"].to_numpy(), scores,
                       f"Grad-CAM of cnn/{manifest['arch']} (chunk 0)")
