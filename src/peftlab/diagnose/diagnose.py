"""The two entry points: `diagnose` (on its own, with a short FFT probe) and `diagnose_after_compare` (inside
`compare`, using its full fine-tuning run's weights and checking the advisor against the measured outcome)."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from peftlab.advise import advisor_check, recommend
from peftlab.diagnose.run import DIAGNOSIS_FILE, DiagnoseSettings, measure_signals
from peftlab.errors import ConfigError
from peftlab.files import write_json_atomic


@dataclass
class DiagnoseConfig:
    """The model/data/column/size options of `compare`, the output folder, and how much to measure."""

    model: str = "minilm"
    data: str = "rotten_tomatoes"
    subset: str | None = None
    split: str | None = None
    text_column: str | None = None
    text_pair_column: str | None = None
    label_column: str | None = None
    max_train_examples: int | None = 2000
    max_eval_examples: int | None = 1000
    batch_size: int = 32
    max_length: int = 128
    seed: int = 0
    out: str = "runs/diagnose"
    trust_remote_code: bool = False
    settings: DiagnoseSettings = field(default_factory=DiagnoseSettings)

    def compare_config(self):
        from peftlab.study.compare import CompareConfig

        return CompareConfig(
            model=self.model, data=self.data, methods=["full"], subset=self.subset, split=self.split,
            text_column=self.text_column, text_pair_column=self.text_pair_column, label_column=self.label_column,
            max_train_examples=self.max_train_examples, max_eval_examples=self.max_eval_examples,
            batch_size=self.batch_size, max_length=self.max_length, seed=self.seed, out=self.out,
            trust_remote_code=self.trust_remote_code, robustness=False,
        )


def diagnose(config: DiagnoseConfig) -> dict[str, Any]:
    """Measure every signal (spectrum from a short FFT probe), recommend, write OUT/diagnosis.json."""
    from peftlab.study.compare import prepare_study
    from peftlab.tasks.encode import encode_task

    config.settings.check()
    study = prepare_study(config.compare_config())  # every input checked before anything is written
    check_diagnosable(study.task)
    accelerator = Accelerator()
    encoded = encode_task(study.task, study.tokenizer, config.max_length)
    diagnosis = _assemble(study, measure_signals(study, encoded, accelerator, config.settings))
    write_json_atomic(Path(config.out) / DIAGNOSIS_FILE, diagnosis)
    return diagnosis


def check_diagnosable(task) -> None:
    """The signals (linear probe on class labels, classifier-based spectrum) are defined for classification."""
    if task.task_type != "classification":
        raise ConfigError(f"diagnose measures classification tasks; {task.name!r} is a {task.task_type} task "
                          "(docs/DIAGNOSE.md)")


def diagnose_after_compare(study, encoded, accelerator: Accelerator, out: Path, results: dict[str, Any],
                           settings: DiagnoseSettings | None = None) -> dict[str, Any]:
    """Inside `compare`: diagnose with the full run's weights (else a probe), write OUT/diagnosis.json, and
    return the keys results.json gains: ``diagnosis`` (the file name, the link the report follows),
    ``recommendation`` and ``advisor_check``. A failure returns ``diagnosis_failed`` (the reason) and logs to
    OUT/logs/diagnose.log: the comparison's results stay intact."""
    if study.task.task_type != "classification":
        return {"diagnosis_skipped": f"the diagnosis measures classification tasks, this is {study.task.task_type}"}
    try:
        full_run = out / "runs" / "full"
        full_ok = any(r["method"] == "full" and r["status"] == "ok" for r in results["runs"])
        signals = measure_signals(study, encoded, accelerator, settings or DiagnoseSettings(),
                                  full_run if full_ok and full_run.is_dir() else None)
        diagnosis = _assemble(study, signals)
        check = advisor_check(diagnosis["recommendation"], results["runs"])
        diagnosis["advisor_check"] = check
        write_json_atomic(out / DIAGNOSIS_FILE, diagnosis)
        return {"diagnosis": DIAGNOSIS_FILE, "recommendation": diagnosis["recommendation"], "advisor_check": check}
    except Exception as error:  # noqa: BLE001 - the trained runs and their measurements stay valid
        logs = out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        (logs / "diagnose.log").write_text(traceback.format_exc())
        return {"diagnosis_failed": f"{type(error).__name__}: {str(error).strip()[:200]}"}


def _assemble(study, signals: dict[str, Any]) -> dict[str, Any]:
    config = study.config
    diagnosis = {"model": config.model, "model_path": study.model_ref.path, "data": config.data,
                 "max_length": config.max_length, "seed": config.seed, **signals}
    diagnosis["recommendation"] = recommend(diagnosis)
    return diagnosis

