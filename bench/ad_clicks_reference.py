"""Fit a logistic regression on the planted terms of sample_data/ad_clicks as a reference.

The generator's click model is additive in a known set of terms
(``ground_truth.json``). A scikit-learn logistic regression given exactly those
terms as features is a well-specified model: its AUC shows what 80,000
training rows allow, next to the ceiling of the true probabilities (0.784 on
test, from the ground truth).

With ``--bundle``, the script also checks which planted terms a trained
bundle has missed. For each term it fits, on the validation split with 5-fold
cross-validation, a logistic regression on the bundle's logit plus that term.
A term that raises the AUC is one the bundle has not fully learned.

Usage: python bench/ad_clicks_reference.py [--bundle models/ad_clicks_deepfm]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "sample_data" / "ad_clicks"
SPLITS = ("train", "valid", "test")

# Planted terms beyond the one-hot main effects, as groups of feature columns.
INTERACTION_TERMS = {
    "device x hour": ["mobile_evening", "desktop_office_hours"],
    "site x category": ["site_topic_match"],
    "user_id x category": ["preferred_category"],
    "category x history_categories": ["category_in_history"],
    "ln(bid_price)": ["log_bid"],
}


def planted_features(frame: pd.DataFrame, truth: dict) -> pd.DataFrame:
    """Build one column per planted term of the ground-truth click model."""
    topic_of_site = truth["fields"]["site"]["topic_category"]
    interactions = {item["name"]: item for item in truth["interactions"]}
    preferred = interactions["user_id_x_category"]["preferred_category"]

    parts = [pd.get_dummies(frame[name], prefix=name, dtype=float) for name in ("position", "device", "hour", "category")]
    # Only the heavy users (those with a preferred category) have a user bias.
    heavy_user = frame["user_id"].where(frame["user_id"].isin(preferred.keys()), "other")
    parts.append(pd.get_dummies(heavy_user, prefix="user", dtype=float))
    features = pd.concat(parts, axis=1)

    hour = frame["hour"].astype(int)
    features["log_bid"] = np.log(frame["bid_price"] / 0.5)
    features["mobile_evening"] = ((frame["device"] == "mobile") & (hour >= 18)).astype(float)
    features["desktop_office_hours"] = ((frame["device"] == "desktop") & hour.between(9, 17)).astype(float)
    features["site_topic_match"] = (frame["site"].map(topic_of_site) == frame["category"]).astype(float)
    features["preferred_category"] = (frame["user_id"].map(preferred) == frame["category"]).astype(float)
    features["category_in_history"] = [
        float(category in history.split("|")) for category, history in zip(frame["category"], frame["history_categories"], strict=True)
    ]
    return features


def fit_reference(frames: dict[str, pd.DataFrame], features: dict[str, pd.DataFrame]) -> None:
    columns = features["train"].columns
    for c in (0.1, 1.0, 10.0):
        model = LogisticRegression(C=c, max_iter=2000).fit(features["train"][columns], frames["train"]["click"])
        scores = {}
        for split in ("valid", "test"):
            x = features[split].reindex(columns=columns, fill_value=0.0)
            scores[split] = roc_auc_score(frames[split]["click"], model.predict_proba(x)[:, 1])
        print(f"planted-term LR, C={c}: valid AUC {scores['valid']:.4f}, test AUC {scores['test']:.4f}")


def missed_terms(bundle_path: Path, frame: pd.DataFrame, features: pd.DataFrame) -> None:
    from workbench.bundle import load_bundle
    from workbench.data import load_dataset
    from workbench.training import predict_logits

    bundle = load_bundle(bundle_path)
    dataset = load_dataset(DATA_DIR / "valid.parquet", bundle.schema)
    logits = predict_logits(bundle.model, dataset)
    labels = frame["click"].to_numpy()
    print(f"{bundle.name}: valid AUC {roc_auc_score(labels, logits):.4f}")

    terms = dict(INTERACTION_TERMS)
    terms["all of the above"] = [column for group in INTERACTION_TERMS.values() for column in group]
    for name, columns in terms.items():
        inputs = np.column_stack([logits, features[columns].to_numpy()])
        probabilities = cross_val_predict(LogisticRegression(max_iter=1000), inputs, labels, cv=5, method="predict_proba")[:, 1]
        print(f"  logit + {name}: valid AUC {roc_auc_score(labels, probabilities):.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="bundle folder trained on ad_clicks; also report the planted terms it misses")
    args = parser.parse_args(argv)

    truth = json.loads((DATA_DIR / "ground_truth.json").read_text())
    frames = {split: pd.read_parquet(DATA_DIR / f"{split}.parquet") for split in SPLITS}
    features = {split: planted_features(frame, truth) for split, frame in frames.items()}
    fit_reference(frames, features)
    if args.bundle is not None:
        missed_terms(args.bundle, frames["valid"], features["valid"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
