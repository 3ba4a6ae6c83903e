"""The reproduce report: ``report.md`` and a self-contained ``report.html``, one section per claim.

Each section holds the claim's statement, the experiment (its grid, the
machine, its cores, the software versions the runs recorded), its figure per
workload, the table behind the verdict, the verdict and the rule that decided
it. The HTML embeds every figure as a base64 PNG and carries its own style,
so it opens anywhere without a network; the Markdown links the same PNGs,
written under ``figures/``.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asgdbench.engine import blas
from asgdbench.engine.run_result import RunResult
from asgdbench.errors import UserError
from asgdbench.study import plots
from asgdbench.study.claim_figures import claim_figure
from asgdbench.study.claims import get_claim, oversubscribed_counts
from asgdbench.study.report import markdown_table
from asgdbench.study.reproduce import Plan, count_pending, judge
from asgdbench.study.verdicts import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_TESTABLE,
    SUPPORTED,
    Verdict,
    overall,
)

REPORT_MD, REPORT_HTML, FIGURES = "report.md", "report.html", "figures"
VERDICT_COLOURS = {SUPPORTED: "#1b7f3b", CONTRADICTED: "#b3261e", INCONCLUSIVE: "#5a5a5a",
                   NOT_TESTABLE: "#8a6d00"}


@dataclass(frozen=True)
class Figure:
    """One claim's figure on one workload: its file name and PNG bytes."""

    claim: int
    workload: str
    name: str
    png: bytes


def write_report(folder: Path, plan: Plan, results: Sequence[RunResult]) -> list[Verdict]:
    """Judge the runs, draw the figures, write report.md, report.html and figures/; the verdicts."""
    plt = plots.require_matplotlib()
    verdicts = judge(plan, results)
    figures = []
    for number in plan.claims:
        for workload in plan.workloads_of(number):
            figure = claim_figure(plt, number, results, workload, plan.context)
            if figure is None:
                continue
            buffer = io.BytesIO()
            try:
                figure.savefig(buffer, format="png", dpi=100)
            finally:
                plt.close(figure)
            figures.append(Figure(number, workload, f"claim{number}-{workload}.png",
                                  buffer.getvalue()))
    pending, planned = count_pending(plan, {r.config.key() for r in results})
    try:
        (folder / FIGURES).mkdir(exist_ok=True)
        for figure in figures:
            (folder / FIGURES / figure.name).write_bytes(figure.png)
        (folder / REPORT_MD).write_text(render_markdown(plan, verdicts, figures, results,
                                                        pending, planned))
        (folder / REPORT_HTML).write_text(render_html(plan, verdicts, figures, results,
                                                      pending, planned))
    except OSError as error:
        raise UserError(f"cannot write the report in {folder} ({error.strerror})") from None
    return verdicts


def verdict_table(verdicts: Sequence[Verdict]) -> str:
    """The summary: one line per claim and workload, then each claim across workloads."""
    return _markdown(("claim", "workload", "verdict"), verdict_rows(verdicts))


def verdict_rows(verdicts: Sequence[Verdict]) -> list[tuple[str, str, str]]:
    rows = []
    for number in dict.fromkeys(v.claim for v in verdicts):
        mine = [v for v in verdicts if v.claim == number]
        title = f"{number}. {get_claim(number).title}"
        rows += [(title, v.workload, v.verdict) for v in mine]
        if len(mine) > 1:
            rows.append((title, "all workloads", overall(mine)))
    return rows


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    return markdown_table(headers, rows, ["left"] * len(headers))


def experiment_lines(plan: Plan, results: Sequence[RunResult], number: int) -> list[str]:
    """What was run for claim ``number`` and where: grid, machine, cores, versions."""
    claim = get_claim(number)
    lines = []
    for workload in plan.workloads_of(number):
        if workload in plan.missing:
            lines.append(f"{workload}: not run here ({plan.missing[workload]})")
            continue
        for part in claim.plan(plan.scale, plan.cores):
            lrs = ", ".join(f"{plan.base_lr[workload] * factor:g}" for factor in part.lr_factors)
            target = {r.config.target_loss for r in results if r.config.workload == workload}
            limit = {r.config.max_time for r in results if r.config.workload == workload}
            lines.append(f"{workload}: strategies {', '.join(map(str, part.strategies))}; threads "
                         f"{', '.join(map(str, part.threads))}; step sizes {lrs}; "
                         f"{plan.scale.seeds} seeds; target loss "
                         f"{_one(target)}; time limit {_one(limit)} s")
    return lines


def machine_lines(plan: Plan, results: Sequence[RunResult]) -> list[str]:
    """The machine and software the runs recorded (the first run's; differences are named)."""
    if not results:
        return ["no runs yet"]
    environment = results[0].environment
    packages = environment.get("packages", {})
    versions = ", ".join(f"{name} {version}" for name, version in packages.items() if version)
    blas_labels = sorted({" + ".join(blas.label(entry) for entry in r.environment.get("blas", []))
                          for r in results})
    chose = ("(the thread counts are the scale's own)" if plan.scale.thread_counts
             else "used to choose thread counts")
    lines = [f"CPU: {environment.get('cpu_model')}; {plan.cores} physical cores {chose} "
             f"({environment.get('cpu_affinity')} logical CPUs available); "
             f"{environment.get('system')} {environment.get('machine')}",
             f"Python {environment.get('python')}; {versions}",
             f"git commit {environment.get('git_commit') or 'unknown'}; BLAS "
             f"{'; '.join(label for label in blas_labels if label) or 'unknown'}",
             f"scale {plan.scale.name} ({plan.scale.budget}); "
             + ("thread counts fixed by the scale" if plan.scale.thread_counts else
                "thread counts adapt to the cores")
             + f": those up to {plan.cores} each get a core, "
             f"{', '.join(map(str, oversubscribed_counts(plan.cores, plan.scale)))} time-share "
             f"them (memory and contention only)"]
    loads = [r.environment["load_average"][0] for r in results
             if r.environment.get("load_average")]
    if loads:
        lines.append(f"load average (1 min, when each run ended; it counts the runs' own "
                     f"threads too): median {np.median(loads):.1f}, max {max(loads):.1f}, on "
                     f"{plan.cores} cores" + (": other work shared the cores, so times (claims "
                                              "1 and 2) describe a loaded machine"
                                              if np.median(loads) > 2 * plan.cores else ""))
    if len({r.environment.get("git_commit") for r in results}) > 1:
        lines.append("warning: the runs come from several commits")
    return lines + [f"note: {note}" for note in plan.notes]


def _one(values: set) -> str:
    values = {v for v in values if v is not None} or {None}
    return ", ".join("none" if v is None else f"{v:g}" for v in sorted(values, key=str))


def render_markdown(plan: Plan, verdicts: Sequence[Verdict], figures: Sequence[Figure],
                    results: Sequence[RunResult], pending: int, planned: int) -> str:
    out = ["# asgdbench reproduce: the paper's claims on this machine", "",
           "*Consistent Lock-free Parallel SGD for Fast and Stable Convergence* (Bäckström, "
           "Walulya, Papatriantafilou, Tsigas; IPDPS 2021).", ""]
    if pending:
        out += [f"**Incomplete: {pending} of {planned} planned runs are missing** (finish with "
                f"`asgdbench reproduce --resume --out DIR`).", ""]
    out += ["## Verdicts", "", verdict_table(verdicts), "", "## Machine", ""]
    out += [f"- {line}" for line in machine_lines(plan, results)] + [""]
    for number in plan.claims:
        claim = get_claim(number)
        out += [f"## Claim {number}: {claim.title}", "", f"**Claim.** {claim.statement}", "",
                "**Experiment.**", ""]
        out += [f"- {line}" for line in experiment_lines(plan, results, number)] + [""]
        out += [f"**Rule.** {claim.rule}", ""]
        if claim.note:
            out += [f"**Note.** {claim.note}", ""]
        for figure in (f for f in figures if f.claim == number):
            out += [f"![claim {number}, {figure.workload}]({FIGURES}/{figure.name})", "",
                    f"*{claim.figure}*", ""]
        for verdict in (v for v in verdicts if v.claim == number):
            out += [f"### {verdict.workload}: **{verdict.verdict}**", ""]
            out += [f"- {part.name}: {part.verdict} ({part.reason})" for part in verdict.parts]
            out += [""]
            if verdict.rows:
                out += [_markdown(verdict.headers, verdict.rows), ""]
    return "\n".join(out)


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #1d1d1d; line-height: 1.45; font-size: 16px; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 14px; }
th, td { border: 1px solid #bbb; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
.verdict { font-weight: bold; padding: .1em .5em; border-radius: .3em; color: #fff; white-space: nowrap; }
.rule { background: #f6f6f6; border-left: 4px solid #888; padding: .5em .8em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 14px; color: #444; }
.warning { background: #fff3cd; border: 1px solid #e0c36a; padding: .5em .8em; }
ul.parts li { margin: .2em 0; }
"""


def _badge(verdict: str) -> str:
    return (f'<span class="verdict" style="background:{VERDICT_COLOURS[verdict]}">'
            f'{html.escape(verdict)}</span>')


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *,
                raw_last: bool = False) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = [html.escape(str(cell)) for cell in row]
        if raw_last:
            cells[-1] = str(row[-1])
        body.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(plan: Plan, verdicts: Sequence[Verdict], figures: Sequence[Figure],
                results: Sequence[RunResult], pending: int, planned: int) -> str:
    e = html.escape
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           "<title>asgdbench reproduce report</title>", f"<style>{_STYLE}</style></head><body>",
           "<h1>asgdbench reproduce: the paper's claims on this machine</h1>",
           "<p><em>Consistent Lock-free Parallel SGD for Fast and Stable Convergence</em> "
           "(Bäckström, Walulya, Papatriantafilou, Tsigas; IPDPS 2021).</p>"]
    if pending:
        out.append(f'<p class="warning">Incomplete: {pending} of {planned} planned runs are '
                   f"missing (finish with <code>asgdbench reproduce --resume --out DIR</code>)."
                   f"</p>")
    out.append('<h2 id="verdicts">Verdicts</h2>')
    out.append(_html_table(("claim", "workload", "verdict"),
                           [(title, workload, _badge(verdict) if verdict in VERDICT_COLOURS
                             else html.escape(verdict))
                            for title, workload, verdict in verdict_rows(verdicts)],
                           raw_last=True))
    out.append('<h2 id="machine">Machine</h2><ul>')
    out += [f"<li>{e(line)}</li>" for line in machine_lines(plan, results)]
    out.append("</ul>")
    for number in plan.claims:
        claim = get_claim(number)
        out.append(f'<section class="claim" id="claim-{number}" data-claim="{number}">')
        out.append(f"<h2>Claim {number}: {e(claim.title)}</h2>")
        out.append(f'<p class="statement"><strong>Claim.</strong> {e(claim.statement)}</p>')
        out.append('<p><strong>Experiment.</strong></p><ul class="experiment">')
        out += [f"<li>{e(line)}</li>" for line in experiment_lines(plan, results, number)]
        out.append("</ul>")
        out.append(f'<p class="rule"><strong>Rule.</strong> {e(claim.rule)}</p>')
        if claim.note:
            out.append(f'<p class="note"><strong>Note.</strong> {e(claim.note)}</p>')
        for figure in (f for f in figures if f.claim == number):
            data = base64.b64encode(figure.png).decode("ascii")
            out.append(f'<figure data-workload="{e(figure.workload)}"><img alt="claim {number}, '
                       f'{e(figure.workload)}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{e(figure.workload)}: {e(claim.figure)}</figcaption>"
                       f"</figure>")
        for verdict in (v for v in verdicts if v.claim == number):
            out.append(f'<div class="result" data-workload="{e(verdict.workload)}" '
                       f'data-verdict="{e(verdict.verdict)}">')
            out.append(f"<h3>{e(verdict.workload)}: {_badge(verdict.verdict)}</h3>")
            out.append('<ul class="parts">')
            out += [f"<li>{e(part.name)}: {_badge(part.verdict)} {e(part.reason)}</li>"
                    for part in verdict.parts]
            out.append("</ul>")
            if verdict.rows:
                out.append(_html_table(verdict.headers, verdict.rows))
            out.append("</div>")
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)
