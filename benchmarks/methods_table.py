"""Write the table of every registered method (peftlab's own and the tuners generated from peft's registry) into
docs/METHODS.md, between the ``<!-- methods-table -->`` markers: ``python benchmarks/methods_table.py docs/METHODS.md``.
"Task kinds" says where a method runs; the generated tuners were run on a tiny BERT classifier and a tiny Llama causal
LM by tests/test_peft_tuners.py (train, save, reload with identical logits; merged logits where mergeable)."""

from __future__ import annotations

import sys
from pathlib import Path

from peftlab.methods import METHODS

START, END = "<!-- methods-table -->", "<!-- /methods-table -->"


def table() -> str:
    rows = ["| method | source | default lr | key settings | task kinds | mergeable |", "|---|---|---|---|---|---|"]
    for method in METHODS.values():
        row = method.listing()
        row["key settings"] = ", ".join(f"`{k}={v}`" for k, v in method.defaults.items()) or "-"
        rows.append(f"| {method.name} | " + " | ".join(row.values()) + " |")
    return "\n".join(rows)


def main(path: str) -> None:
    target = Path(path)
    text = target.read_text(encoding="utf-8") if target.exists() else ""
    block = f"{START}\n{table()}\n{END}"
    if START in text and END in text:
        text = text[:text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## Every method (generated: `python benchmarks/methods_table.py docs/METHODS.md`)\n\n" + block + "\n"
    target.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/METHODS.md")
