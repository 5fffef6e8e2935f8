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
import textwrap
from typing import Any

__all__ = ["best_anchor", "ratio", "provenance", "render_markdown", "render_charts"]

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


def provenance(results: dict[str, Any]) -> str:
    """Which kind of run made these figures, from which commit, when: every
    table and chart carries it, so a smoke run is never read as a result."""
    settings = results.get("settings", {})
    if "quick" not in settings:
        kind = "run of unrecorded kind"
    elif settings["quick"]:
        kind = "QUICK run (smoke test: small sizes, few repeats; not results)"
    else:
        kind = "full run"
    left_out = [name for key, name in (("skip_network", "network"), ("skip_memory", "memory"))
                if settings.get(key)]
    if left_out:
        kind += f" without the {' and '.join(left_out)} rows"
    commit = settings.get("commit", "unrecorded")
    date = results.get("machine", {}).get("date", "date unrecorded")
    return f"{kind[0].upper()}{kind[1:]}, commit {commit}, {date}"


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
    lines = [f"**{provenance(results)}.**", ""]
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


# Characters per line of a summary-chart label before it wraps.
_LABEL_WIDTH = 60

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
        fig.suptitle(f"{section}\n{provenance(results)}", fontsize=10)
        fig.tight_layout()
        path = os.path.join(out_dir, f"{_slug(section)}.png")
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)

    rated = [(f"{row['section'].split(' (')[0]}: {row['title']}", ratio(row)) for row in results["rows"]]
    rated = [(label, r) for label, r in rated if r is not None]
    if rated:
        # Long row titles are wrapped, and the figure is cropped to what it
        # draws (bbox_inches="tight"), so no label is cut at the edge.
        labels = [textwrap.fill(label, _LABEL_WIDTH) for label, _ in rated][::-1]
        values = [r for _, r in rated][::-1]
        lines = sum(label.count("\n") + 1 for label in labels)
        fig, ax = plt.subplots(figsize=(10, 1.4 + 0.16 * lines + 0.14 * len(labels)))
        ax.barh(labels, values, color=["#188038" if v >= 1 else "#d93025" for v in values])
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.2f}×", va="center", fontsize=7)
        ax.set_xlabel("kvstore vs best anchor (× better; log scale, 1 = equal)")
        ax.set_title(f"kvstore against the best anchor of each row: above 1 it leads, below 1 it trails\n"
                     f"{provenance(results)}", fontsize=10)
        ax.tick_params(labelsize=7)
        ax.margins(x=0.15, y=0.01)
        fig.tight_layout()
        path = os.path.join(out_dir, "summary.png")
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def _plotted(row: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in row["contenders"] if c.get("median") is not None]
