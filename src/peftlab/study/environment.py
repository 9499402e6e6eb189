"""The environment a study ran in (package versions, hardware, command line), recorded in its header.

The study folder's files and atomic writes are in :mod:`peftlab.files`."""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil
import torch


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("peftlab", "torch", "transformers", "peft", "accelerate", "datasets"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def hardware(device: torch.device) -> dict[str, Any]:
    info = {
        "device": device.type,
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(device).total_memory
    return info


def command_line() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
