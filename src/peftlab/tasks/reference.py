"""The reference English sample: general sentences shipped with peftlab (written for it, not task data).

Every signal that needs a contrast (vocabulary fit, language-model loss, representation shift) is also measured
on this sample, so the user sees the task's number next to "ordinary English" for the same model; the forgetting
probe (:mod:`peftlab.study.probes`) measures on it how much a fine-tuned model changed on general text.
"""

from __future__ import annotations

from importlib.resources import files


def reference_texts() -> list[str]:
    """The reference sentences (208 varied general-English sentences), one per line of reference_en.txt."""
    text = files("peftlab.tasks").joinpath("reference_en.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]
