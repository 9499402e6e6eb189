"""The terminal summary of an export: what was written where, sizes, the merge check, the compression table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from peftlab.report.cells import human_bytes


def print_export(summary: dict, console: Console) -> None:
    console.print(f"[bold]{summary['method']}[/bold] from {summary['source']}")
    if "adapter" in summary:
        adapter = summary["adapter"]
        kind = "HF peft format" if adapter["peft_format"] else "peftlab format (load with peftlab.load_adapter)"
        console.print(f"adapter: {adapter['path']}  {human_bytes(adapter['bytes'])} ({kind})")
    if "merged" in summary:
        merged = summary["merged"]
        console.print(f"merged:  {merged['path']}  {human_bytes(merged['bytes'])} "
                      f"(max |logit difference| to the adapter model {merged['max_abs_logit_difference']:.1e})")
    if summary.get("compression"):
        table = Table("density", "quantize", "compressed", "uncompressed", "size ratio", "test accuracy", "change",
                      title="compressed adapters (test split)")
        for row in summary["compression"]:
            table.add_row(
                f"{row['density']:g}", row["quantize"], human_bytes(row["compressed_bytes"]),
                human_bytes(row["adapter_bytes"]), f"{row['size_ratio']:.3f}", f"{row['accuracy']:.4f}",
                f"{100 * row['accuracy_change']:+.1f} pts",
            )
        console.print(table)
