"""The advisor's calibration table from finished `compare` folders (each with results.json and diagnosis.json).

Usage: python benchmarks/advisor_table.py /tmp/calib
Re-runs the rules of peftlab.advise on the stored signals, so the table always shows the current thresholds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from peftlab.advise import advisor_check, recommend
from peftlab.advise.rules import derived_inputs


def rows(root: Path):
    for folder in sorted(p for p in root.iterdir() if (p / "diagnosis.json").is_file() and (p / "results.json").is_file()):
        diagnosis = json.loads((folder / "diagnosis.json").read_text())
        runs = json.loads((folder / "results.json").read_text())["runs"]
        recommendation = recommend(diagnosis)
        check = advisor_check(recommendation, runs)
        yield folder.name, derived_inputs(diagnosis), diagnosis, recommendation, check


def main(root: str) -> None:
    header = ("task", "train", "uncovered chars", "fertility x ref", "MMD", "probe / majority", "probe headroom",
              "energy r16", "advisor", "full acc", "best PEFT", "gap (pts)", "agree?")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    agree = checked = 0
    for name, x, diagnosis, recommendation, check in rows(Path(root)):
        call = recommendation["decision"] + (f" (lora r{recommendation['rank']})" if recommendation["decision"] == "peft" else "")
        call += " +emb" if recommendation["train_embeddings"] else ""
        probe = diagnosis["probe"]
        cells = [name, x["train_examples"], f"{x['uncovered_char_rate']:.3f}", f"{x['fertility_ratio']:.2f}",
                 f"{x['representation_mmd']:.3f}", f"{probe['accuracy']:.3f} / {probe['majority_accuracy']:.3f}",
                 f"{x['probe_headroom']:.2f}", f"{x['energy_at_rank']['16']:.2f}", call]
        if check["status"] == "checked":
            checked += 1
            agree += check["agrees"]
            cells += [f"{check['full_accuracy']:.3f}", f"{check['best_peft_method']} {check['best_peft_accuracy']:.3f}",
                      f"{check['gap_points']:+.1f}", "yes" if check["agrees"] else "no"]
        else:
            cells += ["-", "-", "-", check["status"]]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    print(f"\nagree: {agree} of {checked}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/calib")
