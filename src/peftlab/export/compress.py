"""Adapter compression in the spirit of ComPEFT (Yadav et al., 2023, arXiv:2311.13171): keep the largest
entries of the weight update, quantize what remains.

The update of a saved tensor is the tensor minus the value it starts from (0 for LoRA's A and B, 1 for IA3's
rescaling vectors; the method's `update_tensors`). For each such tensor, independently:

1. sparsify: keep the ``k = round(density * n)`` entries of largest magnitude (at least one), zero the rest;
2. quantize the kept entries, with one float32 scale per tensor:
   - ``int8``: symmetric, ``q = round(v / s)`` in [-127, 127] with ``s = max|v| / 127``;
   - ``sign``: only the sign (one bit), every kept entry becomes ``± s`` with ``s = mean|v|`` (ComPEFT's
     sign x scalar, with the scale that minimises the squared error for those signs instead of a tuned one).

Other tensors (the trained classifier head, DoRA's magnitude vector) are kept as they are.

The compact form is one safetensors file with three streams, each the concatenation over the update tensors:
the bit masks of the kept positions (packed, 1 bit per entry; none for a tensor whose entries are all kept), the
kept values (int8, or packed sign bits) and the scales (float32); the other tensors verbatim under their names;
the update tensors' names, shapes, dtypes, start values and kept counts in the file's metadata (one short JSON
list, so the header stays small). Its size on disk is the size we report.
peft cannot read it, so next to it we write the ordinary ``adapter_model.safetensors`` decoded from it (dense
floats, as large as the original): that is what loads, and it equals ``decompress(compact file)`` exactly.

Written here rather than taken from a library: peft's own pruning helpers (``magnitude_prune`` in
``peft.utils.merge_utils``) sparsify but neither quantize nor store a compact form.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from peftlab.errors import ConfigError

COMPACT_FILE = "adapter_compressed.safetensors"
FORMAT = "peftlab-compressed-adapter-v1"
QUANTIZERS = ("int8", "sign")
# the update tensors' parts, each one stream (concatenated in the order of the metadata's `updates` list)
MASKS, VALUES, SCALES = "updates.masks", "updates.values", "updates.scales"
STREAMS = (MASKS, VALUES, SCALES)


def parse_densities(text: str | list | tuple) -> list[float]:
    """'0.1,0.3' -> [0.1, 0.3]; each a number in (0, 1]."""
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    densities = []
    for item in items:
        if item == "":
            continue
        try:
            value = float(item)
        except (TypeError, ValueError):
            value = float("nan")
        if not 0 < value <= 1:
            raise ConfigError(f"--compress takes densities in (0, 1] (the fraction of update entries kept), got {item!r}")
        densities.append(value)
    if not densities:
        raise ConfigError("--compress needs at least one density, e.g. --compress 0.1,0.3")
    return list(dict.fromkeys(densities))


def check_quantizer(quantize: str) -> None:
    if quantize not in QUANTIZERS:
        raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZERS)}, got {quantize!r}")


def update_start(name: str, update_tensors: dict[str, float]) -> float | None:
    """The start value when `name` is an update tensor (a dotted component matches), else None."""
    for part in name.split("."):
        if part in update_tensors:
            return float(update_tensors[part])
    return None


def compress(tensors: dict[str, Tensor], update_tensors: dict[str, float], density: float,
             quantize: str = "int8") -> tuple[dict[str, Tensor], dict[str, str]]:
    """(compact tensors, metadata) for a state dict: see the module docstring."""
    check_quantizer(quantize)
    compact: dict[str, Tensor] = {}
    layout: list[list] = []  # [name, shape, dtype, start, kept] per update tensor, in stream order
    streams: dict[str, list[Tensor]] = {MASKS: [], VALUES: [], SCALES: []}
    for name, tensor in tensors.items():
        start = update_start(name, update_tensors)
        if start is None:
            compact[name] = tensor.detach().contiguous().cpu()
            continue
        parts, kept = _compress_update(tensor.detach().float().cpu() - start, density, quantize)
        for stream, part in parts.items():
            streams[stream].append(part)
        layout.append([name, list(tensor.shape), str(tensor.dtype).removeprefix("torch."), start, kept])
    for stream, parts in streams.items():
        if parts:
            compact[stream] = torch.cat(parts)
    metadata = {"format": FORMAT, "density": repr(density), "quantize": quantize,
                "updates": json.dumps(layout, separators=(",", ":"))}
    return compact, metadata


def _compress_update(delta: Tensor, density: float, quantize: str) -> tuple[dict[str, Tensor], int]:
    flat = delta.flatten()
    count = flat.numel()
    kept = min(count, max(1, round(density * count)))
    parts: dict[str, Tensor] = {}
    if kept < count:
        mask = torch.zeros(count, dtype=torch.bool)
        mask[torch.topk(flat.abs(), kept, sorted=False).indices] = True
        parts[MASKS] = _pack_bits(mask)
        values = flat[mask]  # ascending position order
    else:
        values = flat
    if quantize == "int8":
        scale = float(values.abs().max()) / 127 if kept else 0.0
        scale = scale if scale > 0 else 1.0
        parts[VALUES] = torch.round(values / scale).clamp(-127, 127).to(torch.int8).view(torch.uint8)
    else:
        scale = float(values.abs().mean()) if kept else 0.0
        parts[VALUES] = _pack_bits(values >= 0)
    parts[SCALES] = torch.tensor([scale], dtype=torch.float32)
    return parts, kept


def decompress(compact: dict[str, Tensor], metadata: dict[str, str]) -> dict[str, Tensor]:
    """The dense state dict a compact form encodes (what the loadable adapter_model.safetensors holds)."""
    if metadata.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file (format {metadata.get('format')!r})")
    quantize = metadata["quantize"]
    dense = {name: tensor for name, tensor in compact.items() if name not in STREAMS}
    masks, values, scales = (compact.get(stream, torch.zeros(0, dtype=torch.uint8)) for stream in STREAMS)
    mask_at = values_at = 0
    for index, (name, shape, dtype, start, kept) in enumerate(json.loads(metadata["updates"])):
        count = math.prod(shape)
        if quantize == "int8":
            kept_values = values[values_at:values_at + kept].view(torch.int8).float() * scales[index]
            values_at += kept
        else:
            size = math.ceil(kept / 8)
            kept_values = (_unpack_bits(values[values_at:values_at + size], kept).float() * 2 - 1) * scales[index]
            values_at += size
        if kept < count:
            size = math.ceil(count / 8)
            flat = torch.zeros(count, dtype=torch.float32)
            flat[_unpack_bits(masks[mask_at:mask_at + size], count)] = kept_values
            mask_at += size
        else:
            flat = kept_values
        dense[name] = (flat + start).reshape(shape).to(getattr(torch, dtype))
    return dense


def save_compact(path: Path, compact: dict[str, Tensor], metadata: dict[str, str]) -> int:
    """Write the compact form; returns its size in bytes (the reported compressed size)."""
    save_file(compact, str(path), metadata=metadata)
    return Path(path).stat().st_size


def load_compact(path: Path) -> dict[str, Tensor]:
    """The dense state dict from a compact file."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    return decompress(load_file(str(path)), metadata)


def compress_file(adapter_file: Path, out_folder: Path, update_tensors: dict[str, float], density: float,
                  quantize: str) -> dict:
    """Compress an adapter_model.safetensors into `out_folder`: the compact file plus the decoded, loadable
    adapter_model.safetensors (same name as the input). Returns the sizes and counts."""
    tensors = load_file(str(adapter_file))
    with safe_open(str(adapter_file), framework="pt") as handle:
        original_metadata = handle.metadata()
    compact, metadata = compress(tensors, update_tensors, density, quantize)
    compact_bytes = save_compact(out_folder / COMPACT_FILE, compact, metadata)
    dense = load_compact(out_folder / COMPACT_FILE)  # decode what was written: the loadable adapter IS the compact one
    save_file(dense, str(out_folder / adapter_file.name), metadata=original_metadata)
    layout = {name: (shape, kept) for name, shape, _, _, kept in json.loads(metadata["updates"])}
    return {
        "density": density,
        "quantize": quantize,
        "compressed_bytes": compact_bytes,
        "adapter_bytes": adapter_file.stat().st_size,
        "size_ratio": compact_bytes / adapter_file.stat().st_size,
        "update_entries": sum(math.prod(shape) for shape, _ in layout.values()),
        "kept_entries": sum(kept for _, kept in layout.values()),
        "other_entries": sum(t.numel() for name, t in tensors.items() if name not in layout),
    }


def _pack_bits(bits: Tensor) -> Tensor:
    return torch.from_numpy(np.packbits(bits.numpy().astype(np.uint8)))


def _unpack_bits(packed: Tensor, count: int) -> Tensor:
    return torch.from_numpy(np.unpackbits(packed.numpy())[:count].astype(bool))
