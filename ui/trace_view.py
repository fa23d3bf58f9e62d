"""Draw one turn's decision trace: the value profile chart and an HTML summary of how the decision was made.

Everything here reads a *trace record* (``trace_record(result)``): a JSON-friendly dict that is also
what the transcript export stores, so a trace looks the same live, after a reload and in a download.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import TYPE_CHECKING, Any

from agent.values import VALUE_NAMES

if TYPE_CHECKING:
    from graphs.runner import TurnResult

# Plain labels for the keys of TurnResult.uncertainty, in the order the panel shows them.
UNCERTAINTY_LABELS: dict[str, str] = {
    "intent": "Intent (what is being asked)",
    "value_conflict": "Value conflict",
    "normative_disagreement": "Normative disagreement",
}

DECISION_LABELS: dict[str, str] = {
    "clarify": "Asks a clarifying question",
    "answer": "Answers",
    "refuse": "Declines",
}

_NORMS_SHOWN = 8
_PAIRS_SHOWN = 4


def trace_record(result: TurnResult) -> dict[str, Any]:
    """What the panel and the transcript keep of a turn (no embeddings, no raw state)."""
    conflict = result.conflict or {}
    return {
        "decision": result.decision,
        # The reply plan's reason fits what the user told us; the policy's is the fallback.
        "reason": (result.reply_plan or {}).get("shown_reason") or (result.policy or {}).get("reason", ""),
        "question": result.question,
        "values": dict(result.values),
        "conflict": {
            "score": conflict.get("score"),
            "detected": conflict.get("detected"),
            "pairs": list(conflict.get("pairs", [])),
        },
        "norms": list(result.norms),
        "uncertainty": dict(result.uncertainty),
        "policy": dict(result.policy),
        "constraints": dict(result.constraints),
        "domain": dict(result.domain),
        "known_context": dict(result.known_context),
        "llm_error": result.llm_error,
        "decision_path_ms": result.decision_path_ms(),
        "timings_ms": dict(result.timings_ms),
    }


def conflicting_values(trace: Mapping[str, Any]) -> set[str]:
    return {name for pair in trace.get("conflict", {}).get("pairs", []) for name in pair.get("values", [])}


def value_chart_html(trace: Mapping[str, Any] | None) -> str:
    """Horizontal bars over the 20 values in their circumplex order; values in a conflicting pair stand out.

    Plain HTML and CSS: it draws in the browser at once, scales with the panel and reads as text.
    """
    values = (trace or {}).get("values") or {}
    if not values:
        return ""
    in_conflict = conflicting_values(trace or {})
    rows = []
    for name in VALUE_NAMES:
        score = max(0.0, min(1.0, float(values.get(name, 0.0))))
        kind = "ea-bar-conflict" if name in in_conflict else "ea-bar-plain"
        rows.append(
            f'<div class="ea-bar-row" title="{escape(name)}: {score:.2f}">'
            f'<span class="ea-bar-label">{escape(name)}</span>'
            f'<span class="ea-bar-track"><span class="ea-bar {kind}" style="width:{score * 100:.1f}%"></span></span>'
            f'<span class="ea-bar-value">{score:.2f}</span></div>'
        )
    legend = (
        '<span class="ea-legend"><span class="ea-swatch ea-bar-conflict"></span>in a conflicting pair</span>'
        if in_conflict
        else ""
    )
    return (
        '<div class="ea-trace ea-chart" role="figure" aria-label="Value profile over 20 values">'
        f'<h4>Value profile <span class="ea-muted">how strongly the message touches each value</span>{legend}</h4>'
        f"{''.join(rows)}</div>"
    )


def _meter(label: str, value: float | None) -> str:
    if value is None:
        return ""
    share = max(0.0, min(1.0, float(value)))
    level = "high" if share >= 0.66 else "mid" if share >= 0.33 else "low"
    return (
        f'<div class="ea-meter"><span class="ea-meter-label">{escape(label)}</span>'
        f'<span class="ea-meter-bar"><span class="ea-meter-fill ea-{level}" style="width:{share * 100:.0f}%">'
        f'</span></span><span class="ea-meter-value">{share:.2f}</span></div>'
    )


def _support_text(support: Mapping[str, Any] | None) -> str:
    """Share of decided votes that agree, e.g. '78% of 120 agree', or a dash without votes."""
    if not support:
        return "—"
    overall = support.get("overall") or {}
    agree, disagree = int(overall.get("agree", 0)), int(overall.get("disagree", 0))
    decided = agree + disagree
    text = f"{agree / decided:.0%} of {decided} agree" if decided else "no decided votes"
    if support.get("contested"):
        text += ", contested"
    return text


def _pack_label(norm: Mapping[str, Any]) -> str:
    return f"{norm.get('pack_id', '')} v{norm.get('pack_version', '')}"


def _pairs_html(trace: Mapping[str, Any]) -> str:
    conflict = trace.get("conflict", {})
    pairs = conflict.get("pairs", [])[:_PAIRS_SHOWN]
    score = conflict.get("score")
    heading = "Conflicting values"
    if score is not None:
        detected = "detected" if conflict.get("detected") else "below threshold"
        heading += f' <span class="ea-muted">score {float(score):.2f}, {detected}</span>'
    if not pairs:
        return f'<h4>{heading}</h4><p class="ea-muted">No value pair pulls apart on this message.</p>'
    items = "".join(
        f'<li><span class="ea-value">{escape(str(pair["values"][0]))}</span> ↔ '
        f'<span class="ea-value">{escape(str(pair["values"][1]))}</span>'
        f' <span class="ea-muted">{float(pair.get("score", 0.0)):.2f}</span></li>'
        for pair in pairs
        if len(pair.get("values", [])) == 2
    )
    return f'<h4>{heading}</h4><ul class="ea-pairs">{items}</ul>'


def _norms_html(trace: Mapping[str, Any]) -> str:
    norms = list(trace.get("norms", []))
    if not norms:
        return '<h4>Norms used</h4><p class="ea-muted">No community norm applies closely enough.</p>'
    rows = "".join(
        "<tr>"
        f'<td class="ea-community">{escape(str(norm.get("community", "")))}</td>'
        f'<td><span class="ea-stance ea-stance-{escape(str(norm.get("stance", "")))}">'
        f"{escape(str(norm.get('stance', '')))}</span></td>"
        f'<td title="{escape(str(norm.get("text", "")))}">{escape(str(norm.get("says") or norm.get("text", "")))}</td>'
        f"<td>{escape(_support_text(norm.get('support')))}</td>"
        f'<td class="ea-muted">{escape(_pack_label(norm))}</td>'
        "</tr>"
        for norm in norms[:_NORMS_SHOWN]
    )
    more = len(norms) - _NORMS_SHOWN
    extra = f'<p class="ea-muted">and {more} more in the exported transcript.</p>' if more > 0 else ""
    return (
        f'<h4>Norms used <span class="ea-muted">{len(norms)}</span></h4>'
        '<table class="ea-norms"><thead><tr><th>Community</th><th>Stance</th><th>Norm</th>'
        f"<th>Support</th><th>Pack</th></tr></thead><tbody>{rows}</tbody></table>{extra}"
    )


def _uncertainty_html(trace: Mapping[str, Any]) -> str:
    uncertainty = trace.get("uncertainty", {})
    meters = "".join(_meter(label, uncertainty.get(key)) for key, label in UNCERTAINTY_LABELS.items())
    return f"<h4>Uncertainty</h4>{meters}" if meters else ""


def trace_summary_html(trace: Mapping[str, Any] | None) -> str:
    """The decision, its one-sentence reason, the user's known context and the three uncertainties."""
    if not trace:
        return (
            '<div class="ea-trace ea-empty"><p>Send a message to see how Edge Align decides: which values '
            "it touches, which pull against each other, what each community's norms say, and why the agent "
            "asks, answers or declines.</p></div>"
        )
    decision = str(trace.get("decision", ""))
    label = DECISION_LABELS.get(decision, decision)
    reason = str(trace.get("reason") or "")
    context = trace.get("known_context") or {}
    known = ", ".join(f"{escape(k)}: {escape(str(v))}" for k, v in sorted(context.items()) if v != "unknown")
    turn = int(trace.get("turn") or 0)
    timing = trace.get("decision_path_ms")
    facts = [
        f"turn {turn} of this conversation" if turn else "",
        f"decision path {float(timing):.0f} ms" if timing is not None else "",
    ]
    parts = [
        f'<div class="ea-trace" data-turn="{turn}" data-decision="{escape(decision)}">',
        f'<div class="ea-decision ea-decision-{escape(decision)}">{escape(label)}</div>',
        f'<p class="ea-reason">{escape(reason)}</p>' if reason else "",
        f'<p class="ea-muted">Known context: {known}</p>' if known else "",
        f'<p class="ea-warning">Language model problem: {escape(str(trace["llm_error"]))}</p>'
        if trace.get("llm_error")
        else "",
        _uncertainty_html(trace),
        f'<p class="ea-muted">{" · ".join(f for f in facts if f).capitalize()}</p>' if any(facts) else "",
        "</div>",
    ]
    return "".join(parts)


def trace_details_html(trace: Mapping[str, Any] | None) -> str:
    """The conflicting value pairs and the norms used, with their community, stance, support and pack."""
    if not trace:
        return ""
    parts = ['<div class="ea-trace">', _pairs_html(trace), _norms_html(trace), "</div>"]
    return "".join(parts)


TRACE_CSS = """
.ea-trace h4 { margin: 0.9em 0 0.35em; font-size: 0.95em; }
.ea-trace .ea-muted { color: var(--body-text-color-subdued); font-weight: normal; font-size: 0.88em; }
.ea-decision { display: inline-block; padding: 0.2em 0.7em; border-radius: 999px; font-weight: 600;
  font-size: 0.9em; }
.ea-decision-clarify { background: #fef3c7; color: #92400e; }
.ea-decision-answer { background: #dcfce7; color: #166534; }
.ea-decision-refuse { background: #fee2e2; color: #991b1b; }
.ea-reason { margin: 0.5em 0; font-size: 1em; }
.ea-warning { color: #b45309; }
.ea-meter { display: flex; align-items: center; gap: 0.5em; margin: 0.25em 0; font-size: 0.88em; }
.ea-meter-label { flex: 0 0 14.5em; }
.ea-meter-bar { flex: 1; height: 0.6em; background: var(--neutral-200); border-radius: 999px;
  overflow: hidden; }
.ea-meter-fill { display: block; height: 100%; }
.ea-low { background: #22c55e; } .ea-mid { background: #f59e0b; } .ea-high { background: #ef4444; }
.ea-meter-value { flex: 0 0 2.6em; text-align: right; font-variant-numeric: tabular-nums; }
.ea-pairs { margin: 0; padding-left: 1.2em; font-size: 0.9em; }
.ea-value { font-weight: 600; }
.ea-norms { width: 100%; border-collapse: collapse; font-size: 0.82em; }
.ea-norms th, .ea-norms td { text-align: left; vertical-align: top; padding: 0.3em 0.4em;
  border-bottom: 1px solid var(--border-color-primary); }
.ea-community { font-weight: 600; white-space: nowrap; }
.ea-stance { padding: 0.05em 0.45em; border-radius: 4px; white-space: nowrap; }
.ea-stance-expected { background: #dbeafe; color: #1e40af; }
.ea-stance-okay { background: #dcfce7; color: #166534; }
.ea-stance-discouraged { background: #fef3c7; color: #92400e; }
.ea-stance-forbidden { background: #fee2e2; color: #991b1b; }
.ea-empty p { color: var(--body-text-color-subdued); }
.ea-chart h4 { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0.5em; }
.ea-legend { margin-left: auto; font-weight: normal; font-size: 0.8em; display: inline-flex; align-items: center;
  gap: 0.3em; }
.ea-swatch { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 2px; }
.ea-bar-row { display: flex; align-items: center; gap: 0.5em; font-size: 0.82em; line-height: 1.35; }
.ea-bar-label { flex: 0 0 14.5em; text-align: right; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.ea-bar-track { flex: 1; height: 0.8em; background: var(--neutral-100); border-radius: 3px; overflow: hidden; }
.ea-bar { display: block; height: 100%; border-radius: 3px; }
.ea-bar-plain { background: #94a3b8; }
.ea-bar-conflict { background: #ea580c; }
.ea-bar-value { flex: 0 0 2.4em; text-align: right; font-variant-numeric: tabular-nums;
  color: var(--body-text-color-subdued); }
"""
