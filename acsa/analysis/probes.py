"""Linear probes on image features: can an attribute be read off a representation by a linear classifier?

On the synthetic benchmark every image has its identity's attributes and the list of those its view shows
(attributes.json). A probe is a logistic regression fitted on the training images' features and scored on
the validation images' (the test split is never read), one per attribute, against the share of the most
frequent value (what a probe that learned nothing scores). Probing the frozen backbone's outputs says what
the image encoder makes available at all; probing a trained model's global embedding and image tokens says
what its heads kept. If the backbone's outputs carry an attribute that the model's features, or its
retrieval, miss, the alignment limits the model; if the backbone's do not carry it, the encoder does.

Attributes (attributes.json keys): the coarse ones a reader of gender, garment types and colours uses, and
fine ones. A colour or type is probed on the images that show it; a presence (a hat, a carried object) on
every image, "none" when the identity has none.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from acsa.analysis.attributes import flat_identity

COARSE_PROBES = ("head.gender", "upper.type", "upper.colour", "lower.type", "lower.colour")
FINE_PROBES = (
    "head.hair_colour",
    "head.hair_length",
    "head.hat",
    "upper.pattern",
    "feet.colour",
    "carried.type",
)
PRESENCE = ("head.hat", "carried.type")  # absent is a value of its own
MIN_EXAMPLES = 20  # per split: fewer and the probe is not fitted


def image_labels(image_paths: list[str], attributes: dict[str, dict[str, Any]], key: str) -> list[str | None]:
    """Per image, the value of attribute `key` a probe should read, or None where the image does not show
    it (a presence key: "none" when the identity has no such item)."""
    labels: list[str | None] = []
    for path in image_paths:
        entry = attributes[path]
        value = flat_identity(entry["identity"]).get(key)
        if key in PRESENCE and value is None:
            labels.append("none")
        else:
            labels.append(str(value) if key in entry.get("visible", []) and value is not None else None)
    return labels


def probe(train_x: np.ndarray, train_y: list, val_x: np.ndarray, val_y: list) -> dict[str, Any] | None:
    """Fit a logistic regression on the labelled training rows, score it on the labelled validation rows:
    {accuracy, majority, classes, train, val} in percent, or None with too few examples or one class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fit_rows = [i for i, y in enumerate(train_y) if y is not None]
    score_rows = [i for i, y in enumerate(val_y) if y is not None]
    fit_labels = [train_y[i] for i in fit_rows]
    if len(fit_rows) < MIN_EXAMPLES or len(score_rows) < MIN_EXAMPLES or len(set(fit_labels)) < 2:
        return None
    score_labels = [val_y[i] for i in score_rows]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
    model.fit(train_x[fit_rows], fit_labels)
    accuracy = float(np.mean(model.predict(val_x[score_rows]) == np.asarray(score_labels)))
    most_common = Counter(fit_labels).most_common(1)[0][0]
    majority = float(np.mean(np.asarray(score_labels) == most_common))
    return {
        "accuracy": 100 * accuracy,
        "majority": 100 * majority,
        "classes": len(set(fit_labels)),
        "train": len(fit_rows),
        "val": len(score_rows),
    }


def probe_representation(
    train_x: np.ndarray,
    val_x: np.ndarray,
    train_paths: list[str],
    val_paths: list[str],
    attributes: dict[str, dict[str, Any]],
) -> dict[str, dict[str, Any] | None]:
    """Every attribute of COARSE_PROBES and FINE_PROBES probed on one representation ([N, dims] per split)."""
    return {
        key: probe(
            train_x,
            image_labels(train_paths, attributes, key),
            val_x,
            image_labels(val_paths, attributes, key),
        )
        for key in (*COARSE_PROBES, *FINE_PROBES)
    }
