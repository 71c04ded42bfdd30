"""Check that the planted effects of the ad-click data set are visible in the data.

Prints empirical click-through rates (CTR) per value of the main-effect fields,
per cell of each planted interaction, and for the no-effect fields. If
scikit-learn is installed, it also fits a logistic regression on the planted
features and prints the recovered coefficients next to the planted ones.

    python sample_data/check_effects.py --data sample_data/ad_clicks
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd


def load_data_set(data_dir: Path) -> tuple[pd.DataFrame, dict]:
    frames = [
        pd.read_parquet(data_dir / f"{split}.parquet").assign(split=split) for split in ("train", "valid", "test")
    ]
    ground_truth = json.loads((data_dir / "ground_truth.json").read_text(encoding="utf-8"))
    return pd.concat(frames, ignore_index=True), ground_truth


def add_planted_indicators(df: pd.DataFrame, ground_truth: dict) -> pd.DataFrame:
    """Add one boolean column per planted interaction, recomputed from ground_truth.json."""
    interactions = {item["name"]: item for item in ground_truth["interactions"]}
    cells = interactions["device_x_hour"]["cells"]
    df["mobile_evening"] = (df["device"] == "mobile") & df["hour"].isin(cells["mobile"])
    df["desktop_office"] = (df["device"] == "desktop") & df["hour"].isin(cells["desktop"])
    topic = ground_truth["fields"]["site"]["topic_category"]
    df["site_match"] = df["site"].map(topic) == df["category"]
    preferred = interactions["user_id_x_category"]["preferred_category"]
    df["is_heavy"] = df["user_id"].isin(preferred.keys())
    df["preferred_match"] = df["user_id"].map(preferred) == df["category"]
    history_sets = df["history_categories"].str.split("|")
    df["history_match"] = [category in history for category, history in zip(df["category"], history_sets)]
    return df


def recompute_logit(df: pd.DataFrame, ground_truth: dict) -> np.ndarray:
    """Recompute each row's planted logit from ground_truth.json alone."""
    fields = ground_truth["fields"]
    interactions = {item["name"]: item for item in ground_truth["interactions"]}
    logit = np.full(len(df), ground_truth["base_logit"])
    for field in ("position", "device", "hour", "category"):
        logit += df[field].map(fields[field]["values"]).to_numpy()
    logit += df["user_id"].map(fields["user_id"]["heavy_user_bias"]["values"]).fillna(0.0).to_numpy()
    bid = fields["bid_price"]
    logit += bid["coefficient"] * np.log(df["bid_price"].to_numpy() / bid["reference"])
    device_hour = interactions["device_x_hour"]["effect"]
    logit += device_hour["mobile_evening"] * df["mobile_evening"].to_numpy()
    logit += device_hour["desktop_office_hours"] * df["desktop_office"].to_numpy()
    logit += interactions["site_x_category"]["effect"] * df["site_match"].to_numpy()
    logit += interactions["user_id_x_category"]["effect"] * df["preferred_match"].to_numpy()
    logit += interactions["category_x_history_categories"]["effect"] * df["history_match"].to_numpy()
    return logit


def print_ctr(df: pd.DataFrame, group_by, title: str) -> None:
    table = df.groupby(group_by, observed=True)["click"].agg(rows="size", ctr="mean")
    print(f"\n== {title}")
    print(table.to_string(float_format=lambda value: f"{value:.3f}"))


def fit_logistic_regression(df: pd.DataFrame, ground_truth: dict) -> None:
    """Fit click ~ planted features on the train split and compare with the planted values."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        print("\nscikit-learn is not installed; skipping the logistic regression check.")
        return

    train = df[df["split"] == "train"]
    one_hot_fields = ["position", "device", "hour", "category", "os", "gender", "weekday", "city"]
    heavy_user = train["user_id"].where(train["is_heavy"], "other")
    features = pd.concat(
        [pd.get_dummies(train[one_hot_fields], prefix_sep="=", dtype=np.float64),
         pd.get_dummies(heavy_user, prefix="user_id", prefix_sep="=", dtype=np.float64)],
        axis=1,
    )
    features["ln_bid"] = np.log(train["bid_price"] / ground_truth["fields"]["bid_price"]["reference"])
    indicators = ["mobile_evening", "desktop_office", "site_match", "preferred_match", "history_match"]
    for name in indicators:
        features[name] = train[name].astype(np.float64)

    model = LogisticRegression(C=10.0, max_iter=2000)
    model.fit(features.to_numpy(), train["click"].to_numpy())
    coefficient = dict(zip(features.columns, model.coef_[0]))

    print("\n== Logistic regression on train (one-hot + planted indicators), centred per field")
    for field in one_hot_fields:
        planted = ground_truth["fields"][field]["values"]
        values = list(planted)
        fitted = np.array([coefficient.get(f"{field}={value}", 0.0) for value in values])
        planted_array = np.array([planted[value] for value in values])
        fitted -= fitted.mean()
        planted_array -= planted_array.mean()
        error = np.abs(fitted - planted_array).max()
        print(
            f"{field:10s} max |fitted - planted| = {error:.3f}  "
            f"fitted range {np.ptp(fitted):.3f}  planted range {np.ptp(planted_array):.3f}"
        )

    bias = ground_truth["fields"]["user_id"]["heavy_user_bias"]["values"]
    fitted_bias = np.array([coefficient[f"user_id={user}"] - coefficient["user_id=other"] for user in bias])
    correlation = np.corrcoef(fitted_bias, np.array(list(bias.values())))[0, 1]
    print(f"heavy-user bias: correlation fitted vs planted = {correlation:.3f} over {len(bias)} users")

    planted_indicator = {
        "ln_bid": ground_truth["fields"]["bid_price"]["coefficient"],
        "mobile_evening": ground_truth["interactions"][0]["effect"]["mobile_evening"],
        "desktop_office": ground_truth["interactions"][0]["effect"]["desktop_office_hours"],
        "site_match": ground_truth["interactions"][1]["effect"],
        "preferred_match": ground_truth["interactions"][2]["effect"],
        "history_match": ground_truth["interactions"][3]["effect"],
    }
    for name, planted in planted_indicator.items():
        print(f"{name:16s} fitted {coefficient[name]:+.3f}  planted {planted:+.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Print empirical CTRs that show the planted effects.")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(__file__).resolve().parent / "ad_clicks",
        help="directory with the parquet splits and ground_truth.json (default: sample_data/ad_clicks)",
    )
    args = parser.parse_args()

    df, ground_truth = load_data_set(args.data)
    df = add_planted_indicators(df, ground_truth)
    print(f"rows {len(df)}, CTR {df['click'].mean():.4f}")
    print(df.groupby("split")["click"].mean().to_string(float_format=lambda value: f"{value:.4f}"))

    probability = 1.0 / (1.0 + np.exp(-recompute_logit(df, ground_truth)))
    print(
        f"mean planted probability recomputed from ground_truth.json {probability.mean():.4f}, "
        f"stored expected_click_probability {ground_truth['expected_click_probability']:.4f}"
    )
    try:
        from sklearn.metrics import roc_auc_score
    except ImportError:
        roc_auc_score = None
    if roc_auc_score is not None:
        for split in ("train", "valid", "test"):
            rows = (df["split"] == split).to_numpy()
            auc = roc_auc_score(df["click"].to_numpy()[rows], probability[rows])
            print(
                f"AUC of the planted probability on {split}: {auc:.4f} "
                "(oracle; a model can exceed it only by chance)"
            )

    print_ctr(df, "position", "CTR per position (planted: decreasing with rank)")
    print_ctr(df, "device", "CTR per device")
    print_ctr(df, "hour", "CTR per hour (planted: evening peak)")
    df["bid_quartile"] = pd.qcut(df["bid_price"], 4, labels=["q1", "q2", "q3", "q4"])
    print_ctr(df, "bid_quartile", "CTR per bid_price quartile (planted: increasing)")

    df["hour_band"] = pd.cut(
        df["hour"].astype(int), bins=[-1, 8, 17, 23], labels=["00-08", "09-17", "18-23"]
    )
    print_ctr(df, ["device", "hour_band"], "device x hour band (planted: mobile 18-23 +1.0, desktop 09-17 +0.8)")
    print_ctr(df, "site_match", "site x category: ad category equals site topic (planted +1.0)")
    print_ctr(
        df[df["is_heavy"]],
        "preferred_match",
        "user_id x category, heavy users only: preferred category (planted +1.2)",
    )
    has_history = df["history_categories"] != ""
    print_ctr(
        df[has_history],
        "history_match",
        "category x history, rows with history: category in history (planted +0.8)",
    )

    for field in ground_truth["no_effect_fields"]:
        if field == "user_age":
            groups = pd.cut(df["user_age"], bins=[17, 30, 40, 50, 75])
        else:
            groups = df[field]
        ctr = df.groupby(groups, observed=True)["click"].mean()
        print(
            f"no-effect field {field:8s}: CTR per value ranges {ctr.min():.3f} .. {ctr.max():.3f} "
            f"over {len(ctr)} groups"
        )

    fit_logistic_regression(df, ground_truth)


if __name__ == "__main__":
    main()
