"""The compare recipe: the runs, then the diagnosis, then the report — the one place that sequences them.

Read top to bottom, it is the whole of `peftlab compare`: check and load the inputs once
(:func:`peftlab.study.inputs.run_context`), take the study folder's lock (:mod:`peftlab.lock`: one writer per
folder, held until the report is written), plan, resume and execute the runs with their probes
(:func:`peftlab.study.driver.run_study`), diagnose the task with the full fine-tuning run's weights and check the
advisor against the measured runs (:func:`peftlab.diagnose.diagnose_after_compare`), and write the report
(:func:`peftlab.report.write.write_report_safely`). Only this module and the CLI import study, diagnose and report
together; each of those floors depends on the floors below it alone.
"""

from __future__ import annotations

from contextlib import closing, contextmanager
from typing import Callable, Iterator

from accelerate.utils import broadcast_object_list

from peftlab.diagnose import diagnose_after_compare
from peftlab.files import write_results
from peftlab.lock import StudyInUse, StudyLock
from peftlab.progress import StudyProgress
from peftlab.report.results import Results
from peftlab.report.write import write_report_safely
from peftlab.study.config import CompareConfig
from peftlab.study.driver import run_study
from peftlab.study.inputs import RunContext, run_context


def compare(config: CompareConfig, on_run_done: Callable[[dict], None] | None = None,
            on_wait: Callable[[str], None] | None = None, progress: StudyProgress | None = None) -> Results:
    """Run the comparison; returns its :class:`peftlab.report.results.Results`: the results dict also written to
    OUT/results.json, with notebook views (``.table()``, ``.verdict``, ``.runs``, ``.plot()``).

    The study's state lives in OUT/study.sqlite: re-running the same call skips the finished runs and continues an
    interrupted one from its last epoch checkpoint (docs/STUDIES.md). Another process writing the same OUT is a
    :class:`peftlab.lock.StudyInUse` error, or with ``config.wait`` a wait (``on_wait`` is told who holds it).
    ``progress`` hears of every run's start, steps and end (:class:`peftlab.progress.StudyProgress`)."""
    context = run_context(config)  # checks every input before anything is written, the lock file included
    context.progress = progress or context.progress
    with one_writer(context, on_wait):
        with closing(context.progress):  # a live display stops when the runs are done (or interrupted)
            results = run_study(context, on_run_done)
        if not context.accelerator.is_main_process:
            return Results(results, context.out)
        if config.diagnose:  # before the report, which shows diagnosis.json
            results.update(diagnose_after_compare(context.study, context.encoded, context.accelerator, context.out,
                                                  results))
            write_results(context.out, results)
        write_report_safely(context.out, results)  # OUT/report.html; a failure there is one logged line
    return Results(results, context.out)


@contextmanager
def one_writer(context: RunContext, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold OUT's lock for the block. Under a multi-process launch only the main process takes it (the others
    write nothing) and tells the others whether it got it, so that every process stops together when not."""
    accelerator = context.accelerator
    lock, refused = StudyLock(context.out), None
    if accelerator.is_main_process:
        try:
            lock.acquire(context.config.wait, on_wait)
        except StudyInUse as error:
            refused = str(error)
    if accelerator.num_processes > 1:
        box = [refused]
        broadcast_object_list(box, from_process=0)
        refused = box[0]
    if refused:
        raise StudyInUse(refused)
    try:
        yield
    finally:
        lock.release()
