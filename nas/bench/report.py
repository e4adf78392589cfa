"""The command-line side of `nas bench`: `--compare` specs in, the console table and the JSON file out."""

from __future__ import annotations

import datetime
import itertools
import json
from pathlib import Path
from typing import Any

from nas.core.atomic import atomic_write_text
from nas.core.errors import UserError

PHASE_ORDER = ("data", "arch", "weights", "step", "other")


# --- settings ------------------------------------------------------------------------------------------


def split_values(text: str) -> list[str]:
    """Split `a,b,[c,d]` at the commas outside brackets and quotes: ['a', 'b', '[c,d]']."""
    parts, depth, quote, current = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    parts.append(current)
    return [p.strip() for p in parts]


def expand_compare(specs: list[str]) -> list[list[str]]:
    """`['a=1,2', 'b=x,y']` -> every combination as override lists: [['a=1', 'b=x'], ['a=1', 'b=y'], ...].

    Raises:
        UserError: a spec without `=` or with an empty value.
    """
    axes = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--compare {spec!r} is not of the form key=value1,value2,...")
        options = split_values(values)
        if any(not v for v in options):
            raise UserError(f"--compare {spec!r} has an empty value")
        axes.append([f"{key.strip()}={v}" for v in options])
    return [list(combo) for combo in itertools.product(*axes)]


def human_duration(seconds: float) -> str:
    """42 s, 12.5 min, 3.2 h, 4.1 d."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _phases(results: list[dict[str, Any]]) -> list[str]:
    names = {name for r in results for name in r["phase_ms"]}
    return [p for p in PHASE_ORDER if p in names] + sorted(names - set(PHASE_ORDER))


def format_table(report: dict[str, Any]) -> str:
    """One row per setting: images/s (+- std over rounds), ratio to the first row, ms per step and its
    phases, peak memory and the projected wall time of the whole configured run."""
    results = report["results"]
    phases = _phases(results)
    header = ["setting", "img/s", "+-", "x", "ms/step", *phases, "cpu ms", "peak MiB", "projected"]
    rows = []
    for r in results:
        rows.append(
            [
                r["setting"],
                f"{r['images_per_s']:.1f}",
                f"{r['images_per_s_std']:.1f}",
                f"{r['speedup_vs_first']:.2f}",
                f"{r['ms_per_step']:.1f}",
                *(f"{r['phase_ms'].get(p, 0.0):.1f}" for p in phases),
                f"{r['cpu_ms_per_step']:.0f}",
                f"{r['peak_memory_mb']:.0f}",
                human_duration(r["projected_s"]),
            ]
        )
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in [header, *rows]]  # fmt: skip
    first = results[0]
    machine = report["machine"]
    cpu = machine.get("cpu")  # {model, capability, threads}; a bare model name in reports before 2026-12-06
    cpu = f"{cpu.get('model')} ({cpu.get('capability')})" if isinstance(cpu, dict) else cpu
    device = machine.get("gpu") if first["device"].startswith("cuda") else cpu
    lines.insert(1, "-" * len(lines[0]))
    lines.append(
        f"{report['kind']} on {device} ({first['device']}, torch {machine['torch']}, "
        f"{machine['torch_threads']} threads); {report['steps']} timed steps per setting after "
        f"{report['warmup']} warm-up, in {min(report['rounds'], report['steps'])} interleaved rounds; "
        f"batch {first['batch_size']}, {first['steps_per_epoch']} steps/epoch x {first['epochs']} epochs "
        f"projected; memory: {first['memory']}; load average {_load(machine)}"
    )
    return "\n".join(lines)


def _load(machine: dict[str, Any]) -> str:
    load = machine.get("load_average") or [None, None]
    return (
        " -> ".join("?" if v is None else f"{v:.1f}" for v in load) + f" on {machine.get('cpu_count')} CPUs"
    )


def default_output(report: dict[str, Any]) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / "bench" / f"{report['kind']}-{stamp}.json"


def write_report(report: dict[str, Any], path: str | Path | None = None) -> Path:
    """Write the report as JSON (atomically) to `path`, or to runs/bench/<kind>-<time>.json."""
    path = Path(path) if path else default_output(report)
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    return path
