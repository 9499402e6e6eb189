"""Fit the advisor's thresholds to the verdicts of finished studies and score the fit out of sample
(peftlab.advise.calibrate; docs/DIAGNOSE.md, "Calibration").

    python benchmarks/calibrate_advisor.py OUT [OUT ...] [--json fitted.json]

Each OUT is a `peftlab bench` output folder (its studies are OUT/tasks/<task>/) or a study folder; a study needs
diagnosis.json (the suites run with `diagnose: true`) and a conclusive verdict in results.json. It prints the
studies used and left out (with why), each study's signals, the verdict's call, the advisor's call with the
current (provisional) thresholds and with the fitted ones, the agreement in sample and leave-one-task-out, and the
thresholds the fit moved. Nothing is written into peftlab: adopting fitted thresholds is a change to
src/peftlab/advise/rules.py, made by hand with this output cited.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import _common  # noqa: F401  (sets the offline environment first)

from peftlab.advise import recommend
from peftlab.advise.calibrate import calibrate, labelled_studies
from peftlab.advise.rules import THRESHOLDS, derived_inputs


def study_folders(paths: list[str]) -> list[Path]:
    folders = []
    for path in map(Path, paths):
        tasks = path / "tasks"
        folders += sorted(p for p in tasks.iterdir() if p.is_dir()) if tasks.is_dir() else [path]
    return folders


def number(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outs", nargs="+", help="suite output folders or study folders")
    parser.add_argument("--json", default=None, help="also write the calibration here")
    args = parser.parse_args()
    studies, left_out = labelled_studies(study_folders(args.outs))
    for entry in left_out:
        print(f"left out: {entry['name']}: {entry['reason']}")
    if not studies:
        print("no study with a diagnosis and a conclusive verdict: nothing to fit")
        return
    result = calibrate(studies)
    held_out = {entry["name"]: entry["call"] for entry in result["leave_one_out"]["studies"]}
    print()
    print("| study | verdict | fertility x ref | uncovered chars | probe headroom | MMD | energy r16 | train | "
          "advisor now | advisor fitted | left out, fitted on the others |")
    print("|" + "---|" * 11)
    for study in studies:
        x = derived_inputs(study["diagnosis"])
        energy = (x["energy_at_rank"] or {}).get("16")
        print(f"| {study['name']} | {study['verdict']} ({study['label']}) | {number(x['fertility_ratio'])} | "
              f"{number(x['uncovered_char_rate'], 3)} | {number(x['probe_headroom'])} | "
              f"{number(x['representation_mmd'], 3)} | {number(energy)} | {x['train_examples']} | "
              f"{recommend(study['diagnosis'])['decision']} | "
              f"{recommend(study['diagnosis'], result['thresholds'])['decision']} | {held_out[study['name']]} |")
    print()
    print(f"studies: {result['studies']} ({result['labels']['full']} full, {result['labels']['peft']} peft)")
    print(f"current thresholds: {result['current']['agree']} of {result['current']['of']}")
    print(f"in sample: {result['in_sample']['agree']} of {result['in_sample']['of']}")
    print(f"leave one task out: {result['leave_one_out']['agree']} of {result['leave_one_out']['of']}")
    for name, change in result["changed"].items():
        print(f"  {name}: {change['from']:g} -> {change['to']:.4g}")
    unchanged = [name for name in THRESHOLDS if name not in result["changed"]]
    print(f"  unchanged: {', '.join(unchanged)}")
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "left_out": left_out}, indent=2))


if __name__ == "__main__":
    main()
