"""The controlled probes' renderings, measured (docs/PROBES.md): for each rendering of the sentiment sample, how
badly the MiniLM tokenizer fits it (WordPiece pieces per space-separated word, the share of words in 3+ pieces,
tokens per text) and whether the meaning stays (test accuracy of a logistic regression on counts of characters and
of words, trained on 3,000 training rows of the same rendering: equal scores mean the same information, renamed).

    python benchmarks/probe_renderings.py     # about a minute on 2 cores
"""

from __future__ import annotations

import _common  # noqa: F401  (sets the offline environment first)
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from peftlab.models import load_tokenizer, resolve_model
from peftlab.tasks.sources import read_source

SPECS = ("cipher=0", "cipher=0.5", "cipher=1", "cyrillic=1", "depth=1", "depth=4")


def bag_accuracy(frames, analyzer) -> float:
    vectorizer = CountVectorizer(analyzer=analyzer, lowercase=False)
    train = frames["train"].iloc[:3000]
    model = LogisticRegression(max_iter=2000).fit(vectorizer.fit_transform(train["text"]), train["label"])
    return float((model.predict(vectorizer.transform(frames["test"]["text"])) == frames["test"]["label"]).mean())


def main() -> None:
    tokenizer = load_tokenizer(resolve_model("minilm"))
    for spec in SPECS:
        _, frames = read_source(f"probe:{spec}")
        texts = frames["test"]["text"]
        pieces = [len(tokenizer.tokenize(word)) for text in texts for word in text.split()]
        lengths = sorted(len(tokenizer(text)["input_ids"]) for text in texts)
        line = (f"{spec:12s} tokens/word {sum(pieces) / len(pieces):.2f}  words in 3+ pieces "
                f"{100 * sum(p >= 3 for p in pieces) / len(pieces):.1f}%  tokens/text median "
                f"{lengths[len(lengths) // 2]} p95 {lengths[int(0.95 * len(lengths))]}")
        if not spec.startswith("depth"):
            line += (f"  bag-of-characters {100 * bag_accuracy(frames, 'char'):.1f}%  bag-of-words "
                     f"{100 * bag_accuracy(frames, lambda text: text.split(' ')):.1f}%")
        print(line, flush=True)


if __name__ == "__main__":
    main()
