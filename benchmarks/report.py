"""Turn a comparison run into a markdown table and PNG bar charts.

Input is the JSON-able dict compare.py writes to results/comparison.json:
``{"machine": {...}, "settings": {...}, "rows": [row, ...]}`` where a row is
``{"section", "title", "unit", "higher_is_better", "note", "contenders":
[{"name", "role", "samples", "median", "skipped"}]}`` and role is
"subject" (kvstore), "anchor" (what kvstore is judged against) or
"reference" (shown for context, never the yardstick: kvstore's own
alternatives and the bare-socket floor).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["best_anchor", "ratio", "render_markdown", "render_charts"]

SUBJECT = "subject"
ANCHOR = "anchor"
REFERENCE = "reference"


def _measured(row: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [c for c in row["contenders"] if c["role"] == role and c.get("median") is not None]


def best_anchor(row: dict[str, Any]) -> dict[str, Any] | None:
    anchors = _measured(row, ANCHOR)
    if not anchors:
        return None
    pick = max if row["higher_is_better"] else min
    return pick(anchors, key=lambda c: c["median"])


def ratio(row: dict[str, Any]) -> float | None:
    """How many times better kvstore is than the best anchor (> 1: leads)."""
    subjects = _measured(row, SUBJECT)
    anchor = best_anchor(row)
    if not subjects or anchor is None or not anchor["median"] or not subjects[0]["median"]:
        return None
    mine, theirs = subjects[0]["median"], anchor["median"]
    return mine / theirs if row["higher_is_better"] else theirs / mine


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _sections(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row["section"], []).append(row)
    return out


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for role in (SUBJECT, ANCHOR, REFERENCE):
        for row in rows:
            for c in row["contenders"]:
                if c["role"] == role and c["name"] not in names:
                    names.append(c["name"])
    return names


def _role_mark(rows: list[dict[str, Any]], name: str) -> str:
    roles = {c["role"] for r in rows for c in r["contenders"] if c["name"] == name}
    return " (ref)" if roles == {REFERENCE} else ""


def render_markdown(results: dict[str, Any]) -> str:
    lines = []
    settings = results.get("settings", {})
    lines.append(f"Medians of {settings.get('repeats', '?')} interleaved repeats "
                 "(one-shot rows: a single run). The last column is kvstore's "
                 "factor against the best anchor of the row: above 1 kvstore "
                 "leads, below 1 it trails. (ref) columns are context, never the "
                 "yardstick.")
    lines.append("")
    for section, rows in _sections(results["rows"]).items():
        names = _columns(rows)
        lines.append(f"### {section}")
        lines.append("")
        header = ["Benchmark", "unit"] + [n + _role_mark(rows, n) for n in names] + \
            ["best anchor", "kvstore ×"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(names) + 2)) + "|")
        for row in rows:
            by_name = {c["name"]: c for c in row["contenders"]}
            cells = [row["title"], row["unit"] + (" ↑" if row["higher_is_better"] else " ↓")]
            for n in names:
                c = by_name.get(n)
                if c is None:
                    cells.append("")
                elif c.get("median") is None:
                    cells.append("skipped")
                else:
                    cells.append(fmt(c["median"]))
            anchor = best_anchor(row)
            cells.append(anchor["name"] if anchor else "—")
            r = ratio(row)
            cells.append("—" if r is None else f"**{r:.2f}**" if r >= 1 else f"{r:.2f}")
            lines.append("| " + " | ".join(cells) + " |")
        notes = [f"- {row['title']}: {row['note']}" for row in rows if row.get("note")]
        if notes:
            lines.append("")
            lines.extend(notes)
        lines.append("")
    skipped = [(row["title"], c["name"], c["skipped"]) for row in results["rows"]
               for c in row["contenders"] if c.get("skipped")]
    if skipped:
        lines.append("Skipped:")
        lines.append("")
        lines.extend(f"- {title} / {name}: {why}" for title, name, why in skipped)
        lines.append("")
    lines.append("↑ higher is better, ↓ lower is better.")
    return "\n".join(lines) + "\n"


def render_machine(machine: dict[str, Any]) -> str:
    return "\n".join(f"- {k}: {v}" for k, v in machine.items()) + "\n"


_COLOURS = {SUBJECT: "#e8710a", ANCHOR: "#1a73e8", REFERENCE: "#9aa0a6"}


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def render_charts(results: dict[str, Any], out_dir: str) -> list[str]:
    """One PNG per section (a panel per row, real units) and summary.png
    (kvstore's factor against the best anchor, per row)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for section, rows in _sections(results["rows"]).items():
        height = 0.8 + sum(0.55 + 0.28 * max(1, len(_plotted(r))) for r in rows)
        fig, axes = plt.subplots(len(rows), 1, figsize=(8, height), squeeze=False)
        for ax, row in zip(axes[:, 0], rows):
            bars = _plotted(row)
            names = [c["name"] for c in bars][::-1]
            values = [c["median"] for c in bars][::-1]
            colours = [_COLOURS[c["role"]] for c in bars][::-1]
            ax.barh(names, values, color=colours)
            for y, v in enumerate(values):
                ax.text(v, y, " " + fmt(v), va="center", fontsize=7)
            better = "higher is better" if row["higher_is_better"] else "lower is better"
            ax.set_title(f"{row['title']} ({row['unit']}, {better})", fontsize=9, loc="left")
            ax.tick_params(labelsize=7)
            ax.margins(x=0.2)
        fig.suptitle(section, fontsize=11)
        fig.tight_layout()
        path = os.path.join(out_dir, f"{_slug(section)}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    rated = [(f"{row['section'].split(' (')[0]}: {row['title']}", ratio(row)) for row in results["rows"]]
    rated = [(label, r) for label, r in rated if r is not None]
    if rated:
        fig, ax = plt.subplots(figsize=(10, 0.9 + 0.3 * len(rated)))
        labels = [label for label, _ in rated][::-1]
        values = [r for _, r in rated][::-1]
        ax.barh(labels, values, color=["#188038" if v >= 1 else "#d93025" for v in values])
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.2f}×", va="center", fontsize=7)
        ax.set_xlabel("kvstore vs best anchor (× better; log scale, 1 = equal)")
        ax.tick_params(labelsize=7)
        ax.margins(x=0.15)
        fig.tight_layout()
        path = os.path.join(out_dir, "summary.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _plotted(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in row["contenders"] if c.get("median") is not None]
