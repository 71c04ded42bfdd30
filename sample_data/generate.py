"""Generate the synthetic ad-click data set in sample_data/ad_clicks/.

The data imitates a display-advertising impression log: each row is one ad
impression with user, context and ad fields, and the label `click` is 1 when
the ad was clicked. The click probability follows a known logistic model with
planted main effects and planted pairwise interactions, so an interpretability
tool can be checked against the truth. Some fields have no effect at all.

The published files were written with the default seed:

    python sample_data/generate.py --out sample_data/ad_clicks --seed 7

Outputs, all in the --out directory:

    train.parquet, valid.parquet, test.parquet  the rows of a random split
    schema.json        field names and kinds, in the format the workbench reads
    ground_truth.json  the planted model: base logit, every effect, rates

The click model, where every term is listed in ground_truth.json:

    logit = base_logit
          + position_effect[position] + device_effect[device]
          + hour_effect[hour] + category_effect[category]
          + user_bias[user_id]            (non-zero only for heavy users)
          + bid_coefficient * ln(bid_price / bid_reference)
          + device x hour bonus  + site x category bonus
          + user_id x category bonus + category x history_categories bonus
    click ~ Bernoulli(sigmoid(logit))

Only numpy.random.default_rng(seed) draws random numbers, and every draw
happens in a fixed order, so one seed gives byte-identical files with the
same numpy and pyarrow versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DEFAULT_SEED = 7
DEFAULT_TRAIN_ROWS = 80_000
DEFAULT_VALID_ROWS = 20_000
DEFAULT_TEST_ROWS = 20_000

LABEL = "click"
MAX_HISTORY_LENGTH = 20
HISTORY_SEPARATOR = "|"

# ---------------------------------------------------------------------------
# Vocabularies
# ---------------------------------------------------------------------------

CATEGORIES = [
    "sports", "travel", "fashion", "electronics", "finance",
    "automotive", "food", "beauty", "gaming", "home",
    "health", "education", "music", "movies", "books",
    "pets", "real_estate", "jobs", "insurance", "telecom",
    "toys", "jewelry", "outdoor", "software", "dating",
]

# Each category has two sites whose topic it is, so the site x category
# interaction has a readable meaning ("a sports ad on a sports site").
SITE_NAME_PATTERNS = ["{}-daily.com", "{}-hub.net"]

CITIES = [
    "Berlin", "London", "Paris", "Madrid", "Rome",
    "Amsterdam", "Vienna", "Warsaw", "Prague", "Stockholm",
    "Copenhagen", "Oslo", "Helsinki", "Dublin", "Lisbon",
    "Brussels", "Zurich", "Munich", "Hamburg", "Milan",
    "Barcelona", "Budapest", "Athens", "New York", "Los Angeles",
    "Chicago", "Toronto", "Sydney", "Tokyo", "Seoul",
    "Singapore", "Mumbai", "Sao Paulo", "Mexico City", "Istanbul",
    "Cairo", "Lagos", "Nairobi", "Cape Town", "Buenos Aires",
]

DEVICES = ["mobile", "desktop", "tablet"]
DEVICE_SHARE = [0.60, 0.30, 0.10]

OPERATING_SYSTEMS = ["android", "ios", "windows", "macos", "linux"]
OS_SHARE = [0.35, 0.25, 0.25, 0.10, 0.05]

GENDERS = ["f", "m", "unknown"]
GENDER_SHARE = [0.46, 0.44, 0.10]

HOURS = [f"{hour:02d}" for hour in range(24)]
# Relative traffic per hour of day: quiet at night, peaks at noon and evening.
HOUR_TRAFFIC = [
    0.8, 0.5, 0.3, 0.2, 0.2, 0.3, 0.6, 1.2, 1.8, 2.0, 2.0, 2.1,
    2.4, 2.2, 2.0, 2.0, 2.1, 2.3, 2.6, 2.9, 3.1, 2.9, 2.2, 1.4,
]

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
WEEKDAY_TRAFFIC = [1.0, 1.0, 1.0, 1.0, 1.05, 0.95, 0.9]

POSITIONS = ["1", "2", "3", "4", "5"]

# ---------------------------------------------------------------------------
# Population sizes and traffic shape
# ---------------------------------------------------------------------------

NUM_USERS = 10_000
NUM_ITEMS = 3_000
NUM_ADVERTISERS = 300
NUM_HEAVY_USERS = 500

# User activity is Zipf-like: the user of activity rank r (1 = most active)
# gets weight (r + USER_ACTIVITY_OFFSET) ** -USER_ACTIVITY_EXPONENT. Every user
# has at least one row. With 120,000 rows the most active user has about 660
# rows in expectation and the 500th about 39, so the heavy-user effects are
# learnable.
USER_ACTIVITY_OFFSET = 50
USER_ACTIVITY_EXPONENT = 1.2

ITEM_POPULARITY_OFFSET = 10
ITEM_POPULARITY_EXPONENT = 1.0
ADVERTISER_SIZE_EXPONENT = 1.0
CATEGORY_POPULARITY_EXPONENT = 0.8
SITE_POPULARITY_EXPONENT = 0.7
CITY_POPULARITY_EXPONENT = 0.7

# Share of an advertiser's items that belong to the advertiser's main category.
ADVERTISER_MAIN_CATEGORY_SHARE = 0.8
# Share of a user's impressions served on the user's primary device.
PRIMARY_DEVICE_SHARE = 0.8
# Share of a user's impressions served in the user's home city.
HOME_CITY_SHARE = 0.9

# Ad targeting rules, applied to a uniform draw u in [0, 1) per row:
#   u < 0.30 and heavy user         -> an item of the user's preferred category
#   0.30 <= u < 0.50                -> an item of the site's topic category
#   0.50 <= u < 0.65, history given -> an item of a category in the history
#   otherwise                       -> an item by global popularity
TARGET_PREFERRED_UNTIL = 0.30
TARGET_SITE_TOPIC_UNTIL = 0.50
TARGET_HISTORY_UNTIL = 0.65

# Share of history entries drawn from the user's interest profile. The other
# entries are random categories by popularity.
HISTORY_INTEREST_SHARE = 0.9
NUM_INTEREST_CATEGORIES = 3
# Share of ordinary users without any click history (new users).
NO_HISTORY_USER_SHARE = 0.2

BID_LOG_MEAN = math.log(0.5)  # median bid of 0.50 USD per click
BID_LOG_STD = 0.5

# ---------------------------------------------------------------------------
# Planted effects, in logit units
# ---------------------------------------------------------------------------

# Chosen so that the overall click rate is about 20 %.
BASE_LOGIT = -2.8

POSITION_EFFECT = {"1": 0.9, "2": 0.4, "3": 0.0, "4": -0.4, "5": -0.9}
DEVICE_EFFECT = {"mobile": 0.15, "desktop": 0.0, "tablet": -0.25}
# Evening peak: HOUR_EFFECT_AMPLITUDE * cos(2 * pi * (hour - 20) / 24).
HOUR_EFFECT_AMPLITUDE = 0.35
HOUR_EFFECT_PEAK = 20
# Each category gets a fixed effect drawn uniformly from this range.
CATEGORY_EFFECT_RANGE = (-0.5, 0.5)
HEAVY_USER_BIAS_STD = 0.4
BID_COEFFICIENT = 0.4
BID_REFERENCE = 0.5

MOBILE_EVENING_HOURS = range(18, 24)
MOBILE_EVENING_BONUS = 1.0
DESKTOP_OFFICE_HOURS = range(9, 18)
DESKTOP_OFFICE_BONUS = 0.8
SITE_TOPIC_BONUS = 1.0
PREFERRED_CATEGORY_BONUS = 1.2
HISTORY_MATCH_BONUS = 0.8

# Fields with no term in the logit, directly or through another field.
NO_EFFECT_FIELDS = ["os", "gender", "weekday", "city", "user_age"]

# Field order in schema.json and in the parquet columns: user, context, item.
SCHEMA_FIELDS = [
    ("user_id", "categorical"),
    ("gender", "categorical"),
    ("user_age", "numeric"),
    ("history_categories", "sequence"),
    ("device", "categorical"),
    ("os", "categorical"),
    ("city", "categorical"),
    ("site", "categorical"),
    ("hour", "categorical"),
    ("weekday", "categorical"),
    ("position", "categorical"),
    ("item_id", "categorical"),
    ("advertiser", "categorical"),
    ("category", "categorical"),
    ("bid_price", "numeric"),
]


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------


def zipf_weights(count: int, exponent: float, offset: float = 0.0) -> np.ndarray:
    """Return normalised weights (rank + offset) ** -exponent for ranks 1..count."""
    ranks = np.arange(1, count + 1, dtype=np.float64)
    weights = (ranks + offset) ** -exponent
    return weights / weights.sum()


def hour_effects() -> dict[str, float]:
    """Return the per-hour main effect, rounded so that the JSON value is exact."""
    return {
        label: round(HOUR_EFFECT_AMPLITUDE * math.cos(2 * math.pi * (hour - HOUR_EFFECT_PEAK) / 24), 3) + 0.0
        for hour, label in enumerate(HOURS)
    }


def site_names() -> tuple[list[str], np.ndarray]:
    """Return the site names and the index of each site's topic category."""
    names = []
    topics = []
    for pattern in SITE_NAME_PATTERNS:
        for category_index, category in enumerate(CATEGORIES):
            names.append(pattern.format(category.replace("_", "-")))
            topics.append(category_index)
    return names, np.array(topics)


def build_catalog(rng: np.random.Generator) -> dict:
    """Draw the ad catalogue: category effects, advertisers and the item maps.

    Each advertiser has a main category. Each item belongs to one advertiser and
    one category, and both maps are fixed for the whole data set.
    """
    num_categories = len(CATEGORIES)

    # Category popularity follows a shuffled Zipf law, so "sports" is not
    # automatically the most common category.
    category_share = zipf_weights(num_categories, CATEGORY_POPULARITY_EXPONENT)[rng.permutation(num_categories)]
    low, high = CATEGORY_EFFECT_RANGE
    # Adding 0.0 turns -0.0 into 0.0, so the JSON shows no negative zeros.
    category_effect = np.round(rng.uniform(low, high, size=num_categories), 2) + 0.0

    advertiser_main_category = rng.choice(num_categories, size=NUM_ADVERTISERS, p=category_share)
    advertiser_share = zipf_weights(NUM_ADVERTISERS, ADVERTISER_SIZE_EXPONENT)
    # Every advertiser owns at least one item, and the other items follow the Zipf sizes.
    item_advertiser = np.concatenate(
        [
            np.arange(NUM_ADVERTISERS),
            rng.choice(NUM_ADVERTISERS, size=NUM_ITEMS - NUM_ADVERTISERS, p=advertiser_share),
        ]
    )

    off_main = rng.random(NUM_ITEMS) >= ADVERTISER_MAIN_CATEGORY_SHARE
    random_category = rng.choice(num_categories, size=NUM_ITEMS, p=category_share)
    item_category = np.where(off_main, random_category, advertiser_main_category[item_advertiser])

    # Every category needs items so that targeted ads can be drawn from it. A
    # category without items takes over the item whose index equals its own.
    for category_index in range(num_categories):
        if not np.any(item_category == category_index):
            item_category[category_index] = category_index

    item_share = zipf_weights(NUM_ITEMS, ITEM_POPULARITY_EXPONENT, ITEM_POPULARITY_OFFSET)[rng.permutation(NUM_ITEMS)]

    # Popularity-weighted item lists per category, for targeted ad selection.
    items_by_category = []
    for category_index in range(num_categories):
        members = np.flatnonzero(item_category == category_index)
        weights = item_share[members] / item_share[members].sum()
        items_by_category.append((members, weights))

    return {
        "category_share": category_share,
        "category_effect": category_effect,
        "item_advertiser": item_advertiser,
        "item_category": item_category,
        "item_share": item_share,
        "items_by_category": items_by_category,
    }


def build_users(rng: np.random.Generator, total_rows: int, category_share: np.ndarray) -> dict:
    """Draw the user population: activity, attributes, interests and effects.

    The NUM_HEAVY_USERS most active users each get a preferred category and a
    normal bias. User ids are shuffled so that the id does not reveal activity.
    """
    num_categories = len(CATEGORIES)
    if total_rows < NUM_USERS:
        raise ValueError(
            f"total rows {total_rows} is fewer than the {NUM_USERS} users. "
            f"Increase --train-rows, --valid-rows or --test-rows."
        )

    # Index u is the activity rank (0 = most active). Every user gets one row,
    # and the remaining rows follow the Zipf activity weights.
    activity = zipf_weights(NUM_USERS, USER_ACTIVITY_EXPONENT, USER_ACTIVITY_OFFSET)
    row_counts = 1 + rng.multinomial(total_rows - NUM_USERS, activity)
    user_names = np.array([f"user_{number:05d}" for number in rng.permutation(NUM_USERS)])

    is_heavy = np.zeros(NUM_USERS, dtype=bool)
    is_heavy[:NUM_HEAVY_USERS] = True
    preferred_category = np.full(NUM_USERS, -1)
    preferred_category[:NUM_HEAVY_USERS] = rng.choice(num_categories, size=NUM_HEAVY_USERS)
    bias = np.zeros(NUM_USERS)
    bias[:NUM_HEAVY_USERS] = np.round(rng.normal(0.0, HEAVY_USER_BIAS_STD, size=NUM_HEAVY_USERS), 3) + 0.0

    gender = rng.choice(len(GENDERS), size=NUM_USERS, p=GENDER_SHARE)
    age = np.clip(np.round(rng.normal(38.0, 12.0, size=NUM_USERS)), 18, 75)
    home_city = rng.choice(len(CITIES), size=NUM_USERS, p=zipf_weights(len(CITIES), CITY_POPULARITY_EXPONENT))
    primary_device = rng.choice(len(DEVICES), size=NUM_USERS, p=DEVICE_SHARE)

    # The interest profile (a few categories with Dirichlet weights) drives the
    # click history. It is drawn independently of the preferred category, so
    # the user_id x category and category x history interactions stay separable.
    interest_categories = np.stack(
        [
            rng.choice(num_categories, size=NUM_INTEREST_CATEGORIES, replace=False, p=category_share)
            for _ in range(NUM_USERS)
        ]
    )
    interest_weights = rng.dirichlet(np.ones(NUM_INTEREST_CATEGORIES), size=NUM_USERS)

    # Expected history length is 20 * history_rate, and heavy users have longer histories.
    history_rate = np.where(
        is_heavy,
        rng.uniform(0.4, 0.9, size=NUM_USERS),
        rng.uniform(0.05, 0.5, size=NUM_USERS),
    )
    no_history = (~is_heavy) & (rng.random(NUM_USERS) < NO_HISTORY_USER_SHARE)
    history_rate[no_history] = 0.0

    return {
        "row_counts": row_counts,
        "names": user_names,
        "is_heavy": is_heavy,
        "preferred_category": preferred_category,
        "bias": bias,
        "gender": gender,
        "age": age,
        "home_city": home_city,
        "primary_device": primary_device,
        "interest_categories": interest_categories,
        "interest_weights": interest_weights,
        "history_rate": history_rate,
    }


def draw_histories(rng: np.random.Generator, users: dict, user_of_row: np.ndarray, category_share: np.ndarray):
    """Draw each row's click history as a (rows, MAX_HISTORY_LENGTH) category matrix.

    Returns the matrix and the history length per row. Entries at positions at
    or beyond the length are padding and must be ignored.
    """
    num_rows = len(user_of_row)
    lengths = rng.binomial(MAX_HISTORY_LENGTH, users["history_rate"][user_of_row])

    # Pick an interest slot per entry by inverse CDF on the user's weights.
    cumulative = np.cumsum(users["interest_weights"][user_of_row], axis=1)
    uniform = rng.random((num_rows, MAX_HISTORY_LENGTH))
    slots = (uniform[:, :, None] >= cumulative[:, None, :]).sum(axis=2)
    slots = np.minimum(slots, NUM_INTEREST_CATEGORIES - 1)
    from_interest = np.take_along_axis(users["interest_categories"][user_of_row], slots, axis=1)

    random_entries = rng.choice(len(CATEGORIES), size=(num_rows, MAX_HISTORY_LENGTH), p=category_share)
    use_interest = rng.random((num_rows, MAX_HISTORY_LENGTH)) < HISTORY_INTEREST_SHARE
    history = np.where(use_interest, from_interest, random_entries)
    return history, lengths


def choose_items(rng, catalog, users, user_of_row, site_topic_of_row, history, history_lengths) -> np.ndarray:
    """Choose the ad item of each row by the targeting rules listed at TARGET_*."""
    num_rows = len(user_of_row)
    uniform = rng.random(num_rows)
    heavy = users["is_heavy"][user_of_row]
    has_history = history_lengths > 0

    history_pick = np.floor(rng.random(num_rows) * np.maximum(history_lengths, 1)).astype(np.int64)
    history_category = history[np.arange(num_rows), history_pick]

    target_category = np.full(num_rows, -1)
    preferred = heavy & (uniform < TARGET_PREFERRED_UNTIL)
    target_category[preferred] = users["preferred_category"][user_of_row][preferred]
    site_topic = (uniform >= TARGET_PREFERRED_UNTIL) & (uniform < TARGET_SITE_TOPIC_UNTIL)
    target_category[site_topic] = site_topic_of_row[site_topic]
    from_history = (uniform >= TARGET_SITE_TOPIC_UNTIL) & (uniform < TARGET_HISTORY_UNTIL) & has_history
    target_category[from_history] = history_category[from_history]

    items = np.empty(num_rows, dtype=np.int64)
    untargeted = target_category < 0
    items[untargeted] = rng.choice(NUM_ITEMS, size=int(untargeted.sum()), p=catalog["item_share"])
    for category_index, (members, weights) in enumerate(catalog["items_by_category"]):
        rows = np.flatnonzero(target_category == category_index)
        items[rows] = rng.choice(members, size=len(rows), p=weights)
    return items


def simulate(seed: int, split_rows: dict[str, int]) -> tuple[dict[str, pa.Table], dict]:
    """Simulate all rows, draw the labels and split them.

    Returns the parquet tables per split and the ground-truth dictionary.
    """
    rng = np.random.default_rng(seed)
    total_rows = sum(split_rows.values())
    sites, site_topic = site_names()

    catalog = build_catalog(rng)
    users = build_users(rng, total_rows, catalog["category_share"])

    # Rows are generated grouped by user and shuffled before the split.
    user_of_row = np.repeat(np.arange(NUM_USERS), users["row_counts"])

    # Context fields.
    keep_primary = rng.random(total_rows) < PRIMARY_DEVICE_SHARE
    random_device = rng.choice(len(DEVICES), size=total_rows, p=DEVICE_SHARE)
    device = np.where(keep_primary, users["primary_device"][user_of_row], random_device)
    # The operating system is drawn independently of the device, so it carries
    # no signal. Real logs would tie "ios" to mobile and tablet.
    os_index = rng.choice(len(OPERATING_SYSTEMS), size=total_rows, p=OS_SHARE)
    at_home = rng.random(total_rows) < HOME_CITY_SHARE
    random_city = rng.choice(len(CITIES), size=total_rows, p=zipf_weights(len(CITIES), CITY_POPULARITY_EXPONENT))
    city = np.where(at_home, users["home_city"][user_of_row], random_city)
    site = rng.choice(len(sites), size=total_rows, p=zipf_weights(len(sites), SITE_POPULARITY_EXPONENT))
    hour = rng.choice(24, size=total_rows, p=np.array(HOUR_TRAFFIC) / sum(HOUR_TRAFFIC))
    weekday = rng.choice(7, size=total_rows, p=np.array(WEEKDAY_TRAFFIC) / sum(WEEKDAY_TRAFFIC))
    position = rng.integers(0, len(POSITIONS), size=total_rows)

    history, history_lengths = draw_histories(rng, users, user_of_row, catalog["category_share"])
    item = choose_items(rng, catalog, users, user_of_row, site_topic[site], history, history_lengths)
    category = catalog["item_category"][item]
    bid_price = np.maximum(np.round(rng.lognormal(BID_LOG_MEAN, BID_LOG_STD, size=total_rows), 2), 0.01)

    # Click model. Each term mirrors one entry of ground_truth.json.
    hour_effect = hour_effects()
    position_term = np.array([POSITION_EFFECT[label] for label in POSITIONS])[position]
    device_term = np.array([DEVICE_EFFECT[label] for label in DEVICES])[device]
    hour_term = np.array([hour_effect[label] for label in HOURS])[hour]
    category_term = catalog["category_effect"][category]
    user_term = users["bias"][user_of_row]
    bid_term = BID_COEFFICIENT * np.log(bid_price / BID_REFERENCE)

    mobile_evening = (device == DEVICES.index("mobile")) & np.isin(hour, MOBILE_EVENING_HOURS)
    desktop_office = (device == DEVICES.index("desktop")) & np.isin(hour, DESKTOP_OFFICE_HOURS)
    site_match = site_topic[site] == category
    preferred_match = users["preferred_category"][user_of_row] == category
    in_history = np.arange(MAX_HISTORY_LENGTH)[None, :] < history_lengths[:, None]
    history_match = np.any((history == category[:, None]) & in_history, axis=1)

    logit = (
        BASE_LOGIT
        + position_term
        + device_term
        + hour_term
        + category_term
        + user_term
        + bid_term
        + MOBILE_EVENING_BONUS * mobile_evening
        + DESKTOP_OFFICE_BONUS * desktop_office
        + SITE_TOPIC_BONUS * site_match
        + PREFERRED_CATEGORY_BONUS * preferred_match
        + HISTORY_MATCH_BONUS * history_match
    )
    probability = 1.0 / (1.0 + np.exp(-logit))
    click = (rng.random(total_rows) < probability).astype(np.int64)

    history_strings = [
        HISTORY_SEPARATOR.join(CATEGORIES[index] for index in row[:length])
        for row, length in zip(history.tolist(), history_lengths.tolist())
    ]

    columns = {
        "user_id": users["names"][user_of_row],
        "gender": np.array(GENDERS)[users["gender"][user_of_row]],
        "user_age": users["age"][user_of_row].astype(np.float64),
        "history_categories": np.array(history_strings, dtype=object),
        "device": np.array(DEVICES)[device],
        "os": np.array(OPERATING_SYSTEMS)[os_index],
        "city": np.array(CITIES)[city],
        "site": np.array(sites)[site],
        "hour": np.array(HOURS)[hour],
        "weekday": np.array(WEEKDAYS)[weekday],
        "position": np.array(POSITIONS)[position],
        "item_id": np.array([f"item_{number:04d}" for number in range(NUM_ITEMS)])[item],
        "advertiser": np.array([f"adv_{number:03d}" for number in range(NUM_ADVERTISERS)])[
            catalog["item_advertiser"][item]
        ],
        "category": np.array(CATEGORIES)[category],
        "bid_price": bid_price.astype(np.float64),
        LABEL: click,
    }

    distinct_values = {
        name: int(len(np.unique(values)))
        for name, values in columns.items()
        if name not in (LABEL, "history_categories")
    }
    in_history_any = np.arange(MAX_HISTORY_LENGTH)[None, :] < history_lengths[:, None]
    distinct_values["history_categories"] = int(len(np.unique(history[in_history_any])))

    order = rng.permutation(total_rows)
    tables = {}
    positive_rate = {}
    start = 0
    for split, count in split_rows.items():
        rows = order[start : start + count]
        start += count
        tables[split] = pa.table({name: _to_arrow(values[rows]) for name, values in columns.items()})
        positive_rate[split] = round(float(click[rows].mean()), 4)
    positive_rate["all"] = round(float(click.mean()), 4)

    ground_truth = build_ground_truth(
        seed,
        split_rows,
        catalog,
        users,
        sites,
        site_topic,
        positive_rate,
        mean_probability=float(probability.mean()),
        distinct_values=distinct_values,
    )
    return tables, ground_truth


def _to_arrow(values: np.ndarray) -> pa.Array:
    if values.dtype.kind in ("U", "O"):
        return pa.array(values.tolist(), type=pa.string())
    return pa.array(values)


# ---------------------------------------------------------------------------
# Ground truth and schema
# ---------------------------------------------------------------------------


def build_ground_truth(
    seed, split_rows, catalog, users, sites, site_topic, positive_rate, mean_probability, distinct_values
) -> dict:
    """Describe the planted click model with every value needed to recompute the logit.

    `distinct_values` is the number of distinct values per field in all splits
    together; for history_categories it counts distinct category tokens.
    """
    heavy = np.flatnonzero(users["is_heavy"])
    heavy_names = users["names"][heavy].tolist()
    category_effect = {name: float(effect) for name, effect in zip(CATEGORIES, catalog["category_effect"])}

    fields = {
        "user_id": {
            "kind": "categorical",
            "cardinality": NUM_USERS,
            "main_effect": True,
            "description": (
                "User id. Activity is Zipf-like: the user of activity rank r has weight "
                f"(r + {USER_ACTIVITY_OFFSET}) ** -{USER_ACTIVITY_EXPONENT}, and every user has at least one row. "
                f"The {NUM_HEAVY_USERS} most active users ('heavy users') get a bias drawn from "
                f"Normal(0, {HEAVY_USER_BIAS_STD}); all other users have bias 0."
            ),
            "heavy_user_bias": {
                "distribution": "normal",
                "mean": 0.0,
                "std": HEAVY_USER_BIAS_STD,
                "values": {name: float(users["bias"][index]) for name, index in zip(heavy_names, heavy)},
            },
            "rows_per_heavy_user": {
                "min": int(users["row_counts"][heavy].min()),
                "median": float(np.median(users["row_counts"][heavy])),
                "max": int(users["row_counts"][heavy].max()),
            },
        },
        "gender": _no_effect_field(
            "categorical",
            GENDERS,
            "Per-user attribute, drawn independently of everything else. Because it is fixed per user, "
            "raw CTR per value also reflects the heavy users' biases (cluster noise).",
        ),
        "user_age": {
            "kind": "numeric",
            "main_effect": False,
            "description": "Per-user age in years, round(Normal(38, 12)) clipped to [18, 75]. No effect.",
        },
        "history_categories": {
            "kind": "sequence",
            "max_length": MAX_HISTORY_LENGTH,
            "separator": HISTORY_SEPARATOR,
            "main_effect": False,
            "description": (
                "Categories of the user's recent clicks, most recent last, joined with '|'; empty string when "
                f"the user has no history. Each row draws Binomial({MAX_HISTORY_LENGTH}, user rate) entries; "
                f"an entry comes from the user's {NUM_INTEREST_CATEGORIES} interest categories with probability "
                f"{HISTORY_INTEREST_SHARE}, otherwise a random category. The interest profile is independent "
                "of the heavy users' preferred category. No main effect; it takes part in the "
                "category x history_categories interaction."
            ),
        },
        "device": {
            "kind": "categorical",
            "main_effect": True,
            "values": DEVICE_EFFECT,
            "description": "Each user has a primary device used for 80 % of the user's rows.",
        },
        "os": _no_effect_field(
            "categorical", OPERATING_SYSTEMS, "Drawn independently of the device and of everything else."
        ),
        "city": _no_effect_field(
            "categorical",
            CITIES,
            "The user's home city in 90 % of rows, otherwise a random city. Because it is mostly fixed per "
            "user, raw CTR of a small city also reflects the few heavy users who live there (cluster noise).",
        ),
        "site": {
            "kind": "categorical",
            "main_effect": False,
            "values": {name: 0.0 for name in sites},
            "topic_category": {name: CATEGORIES[topic] for name, topic in zip(sites, site_topic)},
            "description": (
                "Publisher site. No main effect; each site has a topic category, used by the "
                "site x category interaction."
            ),
        },
        "hour": {
            "kind": "categorical",
            "main_effect": True,
            "values": hour_effects(),
            "description": (
                f"Hour of day. Effect {HOUR_EFFECT_AMPLITUDE} * cos(2 * pi * (hour - {HOUR_EFFECT_PEAK}) / 24), "
                "rounded to 3 decimals: evening peak at 20:00."
            ),
        },
        "weekday": _no_effect_field("categorical", WEEKDAYS, "Drawn independently of everything else."),
        "position": {
            "kind": "categorical",
            "main_effect": True,
            "values": POSITION_EFFECT,
            "description": "Ad slot rank, uniform over 1..5. The strongest main effect.",
        },
        "item_id": {
            "kind": "categorical",
            "cardinality": NUM_ITEMS,
            "main_effect": False,
            "description": (
                "Ad item with Zipf-like popularity. No direct term, but each item has one fixed category, "
                "so item_id carries the category effect and all category interactions."
            ),
        },
        "advertiser": {
            "kind": "categorical",
            "cardinality": NUM_ADVERTISERS,
            "main_effect": False,
            "description": (
                "Owner of the item (fixed item -> advertiser map). No direct term; advertisers have a main "
                f"category that {ADVERTISER_MAIN_CATEGORY_SHARE:.0%} of their items belong to, so the advertiser "
                "is correlated with the category effect."
            ),
        },
        "category": {
            "kind": "categorical",
            "main_effect": True,
            "values": category_effect,
            "description": (
                f"Category of the item. Effects drawn from Uniform{CATEGORY_EFFECT_RANGE} and rounded to 2 decimals."
            ),
        },
        "bid_price": {
            "kind": "numeric",
            "main_effect": True,
            "unit": "USD per click",
            "distribution": {"type": "lognormal", "log_mean": round(BID_LOG_MEAN, 6), "log_std": BID_LOG_STD},
            "effect": f"{BID_COEFFICIENT} * ln(bid_price / {BID_REFERENCE})",
            "coefficient": BID_COEFFICIENT,
            "reference": BID_REFERENCE,
            "description": "Rounded to cents, minimum 0.01. Monotone increasing effect.",
        },
    }

    for name, field in fields.items():
        field["distinct_values"] = distinct_values[name]

    interactions = [
        {
            "name": "device_x_hour",
            "fields": ["device", "hour"],
            "description": (
                f"device 'mobile' and hour in 18..23 adds {MOBILE_EVENING_BONUS}; device 'desktop' and hour in "
                f"09..17 adds {DESKTOP_OFFICE_BONUS}."
            ),
            "effect": {"mobile_evening": MOBILE_EVENING_BONUS, "desktop_office_hours": DESKTOP_OFFICE_BONUS},
            "cells": {
                "mobile": [HOURS[hour] for hour in MOBILE_EVENING_HOURS],
                "desktop": [HOURS[hour] for hour in DESKTOP_OFFICE_HOURS],
            },
        },
        {
            "name": "site_x_category",
            "fields": ["site", "category"],
            "description": (
                f"The ad category equals the site's topic category (fields.site.topic_category): "
                f"adds {SITE_TOPIC_BONUS}."
            ),
            "effect": SITE_TOPIC_BONUS,
        },
        {
            "name": "user_id_x_category",
            "fields": ["user_id", "category"],
            "description": (
                f"Each of the {NUM_HEAVY_USERS} most active users has a preferred category (uniform draw). "
                f"An ad of that category adds {PREFERRED_CATEGORY_BONUS}. Heavy users see their preferred "
                f"category in about {TARGET_PREFERRED_UNTIL:.0%} of their rows, plus by chance."
            ),
            "effect": PREFERRED_CATEGORY_BONUS,
            "preferred_category": {
                name: CATEGORIES[users["preferred_category"][index]] for name, index in zip(heavy_names, heavy)
            },
        },
        {
            "name": "category_x_history_categories",
            "fields": ["category", "history_categories"],
            "description": f"The ad category appears at least once in history_categories: adds {HISTORY_MATCH_BONUS}.",
            "effect": HISTORY_MATCH_BONUS,
        },
    ]

    return {
        "dataset": "ad_clicks",
        "generator": "sample_data/generate.py",
        "seed": seed,
        "rows": dict(split_rows),
        "label": LABEL,
        "base_logit": BASE_LOGIT,
        "formula": (
            "logit = base_logit + position[position] + device[device] + hour[hour] + category[category] "
            "+ heavy_user_bias[user_id] (0 for other users) "
            f"+ {BID_COEFFICIENT} * ln(bid_price / {BID_REFERENCE}) "
            f"+ {MOBILE_EVENING_BONUS} if device is mobile and hour in 18..23 "
            f"+ {DESKTOP_OFFICE_BONUS} if device is desktop and hour in 09..17 "
            f"+ {SITE_TOPIC_BONUS} if category equals the site's topic category "
            f"+ {PREFERRED_CATEGORY_BONUS} if user_id is a heavy user and category is the user's preferred category "
            f"+ {HISTORY_MATCH_BONUS} if category appears in history_categories; "
            "click ~ Bernoulli(sigmoid(logit)). All terms are additive and there are no other terms."
        ),
        "fields": fields,
        "interactions": interactions,
        "no_effect_fields": NO_EFFECT_FIELDS,
        "indirect_only_fields": {
            "item_id": "determines category through the fixed item -> category map",
            "advertiser": "correlated with category through the advertiser's main category",
            "site": "no main effect; only in the site x category interaction",
            "history_categories": "no main effect; only in the category x history_categories interaction",
        },
        "expected_click_probability": round(mean_probability, 4),
        "positive_rate": positive_rate,
    }


def _no_effect_field(kind: str, values: list[str], description: str) -> dict:
    return {
        "kind": kind,
        "main_effect": False,
        "values": {value: 0.0 for value in values},
        "description": description + " No effect on the click.",
    }


def build_schema() -> dict:
    """Return the schema.json content that the workbench reads."""
    fields = []
    for name, kind in SCHEMA_FIELDS:
        field = {"name": name, "kind": kind}
        if kind == "sequence":
            field["max_length"] = MAX_HISTORY_LENGTH
            field["separator"] = HISTORY_SEPARATOR
        fields.append(field)
    return {"label": LABEL, "fields": fields}


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def write_json(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_outputs(out_dir: Path, tables: dict[str, pa.Table], ground_truth: dict) -> list[Path]:
    """Write the parquet splits, schema.json and ground_truth.json, and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, table in tables.items():
        path = out_dir / f"{split}.parquet"
        # pyarrow stores no timestamps in parquet metadata, so the bytes depend
        # only on the data and the pyarrow version ("created_by").
        pq.write_table(table, path, compression="zstd", compression_level=9)
        paths.append(path)
    for name, content in (("schema.json", build_schema()), ("ground_truth.json", ground_truth)):
        path = out_dir / name
        write_json(path, content)
        paths.append(path)
    return paths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Generate the synthetic ad-click data set (parquet splits, schema.json and ground_truth.json) "
            "with planted main effects and pairwise interactions."
        ),
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=Path(__file__).resolve().parent / "ad_clicks",
        help="output directory, created if missing. Existing files are overwritten (default: sample_data/ad_clicks)",
    )
    parser.add_argument(
        "--seed",
        metavar="INT",
        type=int,
        default=DEFAULT_SEED,
        help=(
            "integer seed for numpy.random.default_rng. The same seed gives identical files "
            f"(default: {DEFAULT_SEED})"
        ),
    )
    parser.add_argument(
        "--train-rows",
        metavar="ROWS",
        type=int,
        default=DEFAULT_TRAIN_ROWS,
        help=f"number of rows in train.parquet (default: {DEFAULT_TRAIN_ROWS})",
    )
    parser.add_argument(
        "--valid-rows",
        metavar="ROWS",
        type=int,
        default=DEFAULT_VALID_ROWS,
        help=f"number of rows in valid.parquet (default: {DEFAULT_VALID_ROWS})",
    )
    parser.add_argument(
        "--test-rows",
        metavar="ROWS",
        type=int,
        default=DEFAULT_TEST_ROWS,
        help=(
            f"number of rows in test.parquet (default: {DEFAULT_TEST_ROWS}). The three row counts together "
            f"must be at least {NUM_USERS}, the number of users. Fewer rows make the heavy-user effects "
            "harder to learn"
        ),
    )
    args = parser.parse_args(argv)
    for option in ("train_rows", "valid_rows", "test_rows"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1, got {getattr(args, option)}")
    total = args.train_rows + args.valid_rows + args.test_rows
    if total < NUM_USERS:
        parser.error(
            f"the row counts add up to {total}, fewer than the {NUM_USERS} users. "
            f"Use at least {NUM_USERS} rows in total."
        )
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    split_rows = {"train": args.train_rows, "valid": args.valid_rows, "test": args.test_rows}
    tables, ground_truth = simulate(args.seed, split_rows)
    paths = write_outputs(args.out, tables, ground_truth)

    for path in paths:
        digest = hashlib.md5(path.read_bytes()).hexdigest()
        print(f"{path}  {path.stat().st_size:,d} bytes  md5 {digest}")
    rates = ", ".join(f"{split} {rate:.4f}" for split, rate in ground_truth["positive_rate"].items())
    print(f"positive rate: {rates}")


if __name__ == "__main__":
    main()
