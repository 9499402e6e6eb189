"""Write a study's report: OUT/report.html (default), report.md with PNG figures, or report.csv."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from peftlab.errors import ConfigError, PeftlabError
from peftlab.files import RESULTS_FILE, check_writable_folder, write_bytes_atomic, write_text_atomic
from peftlab.report.flat import build_csv
from peftlab.report.html import build_html
from peftlab.report.markdown import build_markdown
from peftlab.report.summary import ReportInputs, read_inputs

FORMATS = {"html": "report.html", "md": "report.md", "csv": "report.csv"}
logger = logging.getLogger(__name__)


def write_report(run_dir: str | Path, format: str = "html", out: str | Path | None = None,
                 results: dict[str, Any] | None = None) -> Path:
    """Build the report of the study in ``run_dir`` (its results.json, or ``results``) and write it to ``out``
    (default: RUN_DIR/report.<ext>); returns the path written. Markdown figures go to a ``figures`` folder
    beside the Markdown file."""
    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    run_dir = Path(run_dir)
    inputs = read_inputs(run_dir, results)
    path = Path(out) if out else run_dir / FORMATS[format]
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder; pass a file name (e.g. {path / FORMATS[format]})")
    check_writable_folder(path.parent, "--out" if out else "the study folder")  # before the report is built
    try:
        text, figures = _build(format, inputs)
    except (KeyError, TypeError, ValueError, AttributeError) as error:  # a record without the fields a run writes
        raise PeftlabError(f"{run_dir / RESULTS_FILE} is not a complete peftlab results file "
                           f"({type(error).__name__}: {error}); rerun the study or fix the file") from None
    for name, data in figures.items():
        write_bytes_atomic(path.parent / "figures" / name, data)
    write_text_atomic(path, text)
    return path


def _build(format: str, inputs: ReportInputs) -> tuple[str, dict[str, bytes]]:
    """The report's text and the figures it links (file name -> bytes; Markdown only)."""
    if format == "html":
        return build_html(inputs), {}
    if format == "md":
        return build_markdown(inputs, figure_folder="figures")
    return build_csv(inputs.results), {}


def write_report_safely(run_dir: str | Path, results: dict[str, Any]) -> Path | None:
    """The HTML report at the end of `compare`: a failure is logged in one line and returns None, so the
    study's results.json (already written) is never lost to a report problem."""
    try:
        return write_report(run_dir, "html", results=results)
    except Exception as error:  # noqa: BLE001 - the study is done; the report is a view of it
        logger.warning("the HTML report was not written (%s: %s); rebuild it with `peftlab report %s`",
                       type(error).__name__, error, run_dir)
        return None
