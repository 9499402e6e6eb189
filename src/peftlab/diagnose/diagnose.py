"""The two entry points: `diagnose` (on its own, with a short FFT probe) and `diagnose_after_compare` (inside
`compare`, using its full fine-tuning run's weights and checking the advisor against the measured outcome)."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from peftlab.advise import advisor_check, recommend
from peftlab.diagnose.run import DiagnoseSettings, measure_signals
from peftlab.errors import ConfigError
from peftlab.files import DIAGNOSIS_FILE, RUNS_DIR, short_reason, write_json_atomic, write_log
from peftlab.options import field_names, option
from peftlab.study.config import CompareConfig, DataOptions, ModelOptions
from peftlab.study.inputs import prepare_study
from peftlab.tasks.encode import encode_task
from peftlab.tasks.kinds import DIAGNOSIS


@dataclass
class DiagnoseConfig(ModelOptions, DataOptions):
    """The model and data options of `compare` (the same option groups), the output folder, how much to measure."""

    batch_size: int = option(32, "Batch size of the full fine-tuning probe.")
    out: str = option("runs/diagnose", "Output folder: diagnosis.json.")
    settings: DiagnoseSettings = field(default_factory=DiagnoseSettings)

    def compare_config(self) -> CompareConfig:
        """The CompareConfig whose inputs (model, data, columns, caps, seed) the diagnosis measures."""
        shared = {name: getattr(self, name) for name in field_names(ModelOptions) + field_names(DataOptions)}
        return CompareConfig(**shared, methods=["full"], batch_size=self.batch_size, out=self.out, robustness=False)


def diagnose(config: DiagnoseConfig) -> dict[str, Any]:
    """Measure every signal (spectrum from a short FFT probe), recommend, write OUT/diagnosis.json."""
    config.settings.check()
    study = prepare_study(config.compare_config())  # every input checked before anything is written
    check_diagnosable(study.task)
    accelerator = Accelerator()
    encoded = encode_task(study.task, study.tokenizer, config.max_length)
    diagnosis = _assemble(study, measure_signals(study, encoded, accelerator, config.settings))
    write_json_atomic(Path(config.out) / DIAGNOSIS_FILE, diagnosis)
    return diagnosis


def check_diagnosable(task) -> None:
    """The signals (a linear probe on class labels or a ridge probe on numeric targets, the spectrum of a
    sequence-classifier's update) are defined for classification and regression."""
    if not task.kind.applies(DIAGNOSIS):
        raise ConfigError(f"diagnose measures classification and regression tasks; {task.name!r} is a "
                          f"{task.kind.name} task "
                          "(docs/DIAGNOSE.md)")


def diagnose_after_compare(study, encoded, accelerator: Accelerator, out: Path, results: dict[str, Any],
                           settings: DiagnoseSettings | None = None) -> dict[str, Any]:
    """Inside `compare`: diagnose with the full run's weights (else a probe), write OUT/diagnosis.json, and
    return the keys results.json gains: ``diagnosis`` (the file name, the link the report follows),
    ``recommendation`` and ``advisor_check``. A failure returns ``diagnosis_failed`` (the reason) and logs to
    OUT/logs/diagnose.log: the comparison's results stay intact."""
    if not study.task.kind.applies(DIAGNOSIS):
        return {"diagnosis_skipped": f"the diagnosis measures classification and regression tasks, this is "
                                     f"{study.task.kind.name}"}
    try:
        full_run = out / RUNS_DIR / "full"
        full_ok = any(r["method"] == "full" and r["status"] == "ok" for r in results["runs"])
        signals = measure_signals(study, encoded, accelerator, settings or DiagnoseSettings(),
                                  full_run if full_ok and full_run.is_dir() else None)
        diagnosis = _assemble(study, signals)
        check = advisor_check(diagnosis["recommendation"], results["runs"], verdict=results.get("verdict"))
        diagnosis["advisor_check"] = check
        write_json_atomic(out / DIAGNOSIS_FILE, diagnosis)
        return {"diagnosis": DIAGNOSIS_FILE, "recommendation": diagnosis["recommendation"], "advisor_check": check}
    except Exception as error:  # noqa: BLE001 - the trained runs and their measurements stay valid
        write_log(out, "diagnose", traceback.format_exc())
        return {"diagnosis_failed": short_reason(error)}


def _assemble(study, signals: dict[str, Any]) -> dict[str, Any]:
    config = study.config
    diagnosis = {"model": config.model, "model_path": study.model_ref.path, "data": config.data,
                 "max_length": config.max_length, "seed": config.seed, **signals}
    diagnosis["recommendation"] = recommend(diagnosis)
    return diagnosis

