"""The Task: one dataset, validated, split, capped and fingerprinted, with the kind of task it is.

Every task kind's loader builds one (:mod:`peftlab.tasks.labelled` for classification, :mod:`peftlab.tasks.prompted`
for multiple choice and generation); :func:`peftlab.tasks.load_task` picks the kind. What differs between kinds
is asked of ``task.kind`` (:class:`peftlab.tasks.kinds.TaskKind`), never of a type string.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets

    from peftlab.tasks.kinds import TaskKind


@dataclass
class Task:
    """A dataset ready for training and evaluation: its splits, the columns it came from, and its kind."""

    name: str
    source: str
    label_names: list[str]  # the classes (classification), the shared choices (multiple choice), the target
    # column (regression: one output), or none
    splits: dict[str, datasets.Dataset]
    columns: dict[str, str | None]
    sha256: str
    kind: TaskKind
    # regression: (mean, std) of the training targets, which the model learns standardised (peftlab.tasks.regression)
    target_scale: tuple[float, float] | None = None

    @property
    def task_type(self) -> str:
        """The kind's name (results.json ``task.type``)."""
        return self.kind.name

    @property
    def selection_metric(self) -> str:
        """The validation score the trainer keeps the best epoch by."""
        return self.kind.selection_metric

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def has_text_pair(self) -> bool:
        return self.columns.get("text_pair") is not None

    def describe(self) -> dict:
        """A JSON-able summary of the task."""
        description = {"name": self.name, "source": self.source, "type": self.kind.name, "num_labels": self.num_labels,
                       "label_names": list(self.label_names), "sizes": {s: len(d) for s, d in self.splits.items()},
                       "columns": dict(self.columns), "sha256": self.sha256,
                       "test_majority_share": self.test_majority_share(), "test_chance_share": self.test_chance_share()}
        if self.target_scale is not None:
            description["target_mean"], description["target_std"] = self.target_scale
        return description

    def test_majority_share(self) -> float | None:
        """The share of the test split's most common label: the accuracy of always answering it (None when the
        kind's labels are not classes)."""
        test = self.splits.get("test")
        if not self.kind.majority_baseline or test is None or len(test) == 0 or "label" not in test.column_names:
            return None
        return Counter(test["label"]).most_common(1)[0][1] / len(test)

    def test_chance_share(self) -> float | None:
        """Multiple choice: the accuracy of answering without reading the question, on the test split: the better of
        a uniform guess among each example's choices and, when every example offers the same choices, always
        answering the commonest correct one (None for kinds whose answers are not choices)."""
        test = self.splits.get("test")
        if not self.kind.chance_baseline or test is None or len(test) == 0 or "choices" not in test.column_names:
            return None
        uniform = sum(1 / len(choices) for choices in test["choices"]) / len(test)
        commonest = Counter(test["label"]).most_common(1)[0][1] / len(test) if self.label_names else 0.0
        return max(uniform, commonest)
