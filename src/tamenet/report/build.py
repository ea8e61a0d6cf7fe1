"""`write_report(DIR)`: read a run, cross-validation or search directory and write its `report.html`.

What each directory holds (and so what its report shows):

* a run (`summary.json`, `metrics.csv`, `weights.csv`, `model.pt`): curves of every member with the
  overfitting onset, weight histograms / norms / zeros, uncertainty and calibration for an ensemble or
  a model with dropout (recomputed on the validation rows from `model.pt` and the recipe's data);
* a cross-validation (`cv.json`, `metrics.csv`): the curves of every fold (its stopping set as "val"),
  the per-fold scores;
* a search (`search.json`, `refit/`): the regularization path, halving, every candidate, and the refit
  run's own sections.

Every report ends with "what to try next" from the rules of `tamenet.report.rules`, which it states.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..track.atomic import atomic_write_text
from . import figures
from .calibration import entropy, reliability, uncertainty_vs_error
from .html import Section, esc, figure, page, table
from .rules import (RULES, Finding, diverged_finding, edge_finding, gap_finding, overfit_onset, underfit_finding)
from .weights import read_weights

REPORT_FILE = "report.html"
MAX_CURVES = 48  # members drawn one by one; the rest are listed in the table
MC_SAMPLES = 30


class ReportError(ValueError):
    """The directory is not one `tamenet report` reads."""


def directory_kind(path: Path) -> str:
    """"search", "cv" or "run", from the file the directory's job wrote last."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"report: expected a run, cv or search directory, got {path} (not a directory)")
    for name, kind in (("search.json", "search"), ("cv.json", "cv"), ("summary.json", "run")):
        if (path / name).is_file():
            return kind
    raise ReportError(f"report: {path} holds none of summary.json (a run), cv.json (cross-validation) or "
                      "search.json (a search); is the job still running, or did it fail?")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _recipe(path: Path) -> dict:
    file = path / "recipe.yaml"
    return yaml.safe_load(file.read_text(encoding="utf-8")) if file.is_file() else {}


def _histories(path: Path) -> dict[int, dict[str, list]]:
    from ..track.rundir import read_metrics

    if not (path / "metrics.csv").is_file():
        return {}
    out: dict[int, dict[str, list]] = {}
    for row in sorted(read_metrics(path), key=lambda r: (r.get("member") or 0, r["epoch"])):
        series = out.setdefault(int(row.get("member") or 0), {})
        for key, value in row.items():
            series.setdefault(key, []).append(value)
    return out


def _member_value(value: Any, m: int) -> Any:
    return value[m] if isinstance(value, list) and len(value) > m else value[0] if isinstance(value, list) else value


def _dropout(recipe: dict, m: int) -> float:
    """Member m's largest hidden dropout probability as the recipe gives it."""
    value = (recipe.get("model") or {}).get("dropout", 0.0) or 0.0
    if isinstance(value, list):
        hidden = value[1:] or value
        return max(float(_member_value(v, m) or 0.0) for v in hidden)
    return float(value)


def _current(recipe: dict, m: int) -> dict[str, Any]:
    """The recipe's numbers the suggestions start from, for member m."""
    penalty, train, model = recipe.get("penalty") or {}, recipe.get("train") or {}, recipe.get("model") or {}
    es = train.get("early_stopping") or {}
    return {"l2": float(_member_value(penalty.get("l2", 0.0), m) or 0.0), "dropout": _dropout(recipe, m),
            "input_noise": float(_member_value(train.get("input_noise", 0.0), m) or 0.0),
            "patience": es.get("patience"), "widths": model.get("widths") if model.get("kind", "mlp") == "mlp" else None,
            "epochs": train.get("epochs", 100), "lr": float(_member_value(train.get("lr", 0.0), m) or 0.0)}


def diagnose_member(who: str, task: str, metric: str, series: dict[str, list], recipe: dict, m: int, *,
                    diverged_at: int | None, best_epoch: int | None) -> tuple[int | None, list[Finding]]:
    """The onset epoch and the findings of one member's history."""
    epochs = [int(e) for e in series.get("epoch", [])]
    train, val = series.get("train_loss", []), series.get("val_loss", [])
    current = _current(recipe, m)
    findings = []
    found = diverged_finding(who, train, diverged_at, current["lr"] or None)
    if found:
        return None, [found]
    has_val = bool(val) and any(v is not None and math.isfinite(v) for v in val)
    onset = overfit_onset(train, val, epochs) if has_val else None
    if has_val:
        finite = [(v if v is not None and math.isfinite(v) else math.inf) for v in val]
        best = epochs.index(best_epoch) if best_epoch in epochs else int(np.argmin(finite))
        found = gap_finding(who, train, val, best, current)
        if found:
            if onset is not None:
                found.evidence += f"; overfitting starts at epoch {onset}"
            findings.append(found)
        found = underfit_finding(who, task, train, val, series.get(f"train_{metric}", []), current)
        if found:
            findings.append(found)
    return onset, findings


def _curves_section(histories: dict[int, dict], names: dict[int, str], task: str, metric: str, recipe: dict,
                    best: dict[int, Any], diverged: dict[int, Any]) -> tuple[Section, dict[int, int | None], list[Finding]]:
    onsets, findings, items, options = {}, [], [], []
    for m, series in histories.items():
        onset, found = diagnose_member(names[m], task, metric, series, recipe, m, diverged_at=diverged.get(m),
                                       best_epoch=best.get(m))
        onsets[m] = onset
        findings += found
        if len(items) < MAX_CURVES:
            png = figures.member_curves([int(e) for e in series["epoch"]], series, metric, title=names[m],
                                        best_epoch=best.get(m), onset=onset)
            caption = f"{names[m]}: best epoch {best.get(m)}, " + (
                f"overfitting starts at epoch {onset}" if onset is not None else "no overfitting onset by the rule")
            items.append(figure(png, caption, member=m))
            options.append(f'<option value="{m}">{esc(names[m])}</option>')
    picker = ""
    if len(items) > 1:
        picker = ('<p><label>member: <select id="member-picker"><option value="all">all (small multiples)</option>'
                  + "".join(options) + "</select></label></p>")
    more = (f'<p class="note">{len(histories) - MAX_CURVES} more members are not drawn (see the tables).</p>'
            if len(histories) > MAX_CURVES else "")
    rule = (f'<p class="note">Train dashed, validation solid, the gap shaded; dotted line: best epoch; red line: '
            f'overfitting onset, the first epoch e after which the validation loss (moving average over '
            f'{int(RULES["window"])} epochs) stays above its value at e for the next {int(RULES["patience"])} epochs, '
            f'the last by more than {RULES["rise"]:.0%}, while the training loss keeps falling.</p>')
    body = rule + picker + f'<div class="grid" id="curves">{"".join(items)}</div>' + more
    return Section("curves", "Learning curves", body), onsets, findings


def _weights_section(path: Path, title: str) -> Section | None:
    rows = read_weights(path)
    parts = []
    hist = _weight_arrays(path)
    if hist:
        parts.append(figure(figures.weight_histograms(hist, title=f"{title}: member 0's weights at the end"),
                            "histograms per layer of the nonzero weights; a red line marks exact zeros (their share above each panel), which L1 makes and "
                            "L2 does not (L2 shrinks a bell towards 0)"))
    if rows:
        members = sorted({r["member"] for r in rows})[:3]
        parts.append(figure(figures.weight_norms(rows, members=members, title=title),
                            "weight norm per layer over epochs (member 0 solid, members 1-2 dotted) and the share of "
                            "exact zeros"))
        last = max(r["epoch"] for r in rows)
        final = [r for r in rows if r["epoch"] == last]
        parts.append(table(["member", "layer", "weights", "||W||_2", "exact zeros", "units pruned"],
                           [[r["member"], r["name"], r["size"], r["norm"], r["zero_share"], r["unit_share"]]
                            for r in final], sortable=True))
    if not parts:
        return None
    return Section("weights", "Weights", "".join(parts))


def _weight_arrays(path: Path) -> list[tuple[str, np.ndarray]]:
    """Member 0's weight tensors from model.pt (empty without one)."""
    if not (path / "model.pt").is_file():
        return []
    from ..trained import load_run
    from .weights import weight_roles

    try:
        model = load_run(path).model
    except ValueError:
        return []
    return [(r.name, r.per_member(r.param.detach())[0].double().numpy()) for r in weight_roles(model)]


def _uncertainty_section(path: Path, summary: dict) -> Section | None:
    """Uncertainty against error, reliability and ECE for an ensemble or a model with dropout (validation rows)."""
    if summary.get("task") != "classification" or not (path / "model.pt").is_file():
        return None
    import torch

    from ..data import prepare
    from ..mc_dropout import dropout_layers, mc_predict
    from ..trained import load_run

    members = summary.get("per_member", [summary])
    ensemble = "ensemble" in summary
    try:
        trained = load_run(path)
    except ValueError:
        return None
    if not ensemble and not dropout_layers(trained.model):
        return None
    try:
        data = prepare(trained.recipe.data)
    except (ValueError, OSError) as err:
        return Section("uncertainty", "Uncertainty and calibration",
                       f'<p class="note">not drawn: the validation rows could not be rebuilt ({esc(err)})</p>')
    if not len(data.X_val):
        return None
    X, y = data.X_val, np.asarray(data.y_val)
    with torch.no_grad():
        if ensemble:
            probs = torch.softmax(trained.model(X), dim=-1).mean(0).numpy()
            what = f"ensemble of {trained.model.members} (mean of the members' probabilities)"
        else:
            best = int(np.argmin([m.get("val", {}).get("loss", math.inf) for m in members]))
            probs = mc_predict(trained.model, X, MC_SAMPLES, "classification", member=best)["mean"].numpy()
            what = f"Monte-Carlo dropout, {MC_SAMPLES} masks, member {best}"
    table_ = reliability(probs, y)
    stats = uncertainty_vs_error(probs, y)
    h = entropy(probs)
    wrong = probs.argmax(1) != y
    body = (f'<p>{esc(what)}, on the {len(y)} validation rows: ECE {table_["ece"]:.4f} (15 equal-width bins; '
            f'Guo et al. 2017); mean entropy {stats["right"]:.3f} nats on the right answers, {stats["wrong"]:.3f} on '
            f'the {stats["errors"]} wrong ones; AUROC of entropy as an error detector {stats["auroc"]:.3f} '
            f'(0.5: the wrong answers are no more uncertain than the right ones).</p><div class="grid">'
            + figure(figures.entropy_vs_error(h, wrong, title=what), "are the wrong answers the uncertain ones?")
            + figure(figures.reliability_diagram(table_, title=what), "reliability diagram") + "</div>")
    return Section("uncertainty", "Uncertainty and calibration", body)


def _findings_section(findings: list[Finding], extra: list[str] | None = None) -> Section:
    rules = ("<p class=\"note\">Rules (thresholds in <code>tamenet.report.rules.RULES</code>): "
             f"a <b>large and growing gap</b> is a relative loss gap (val - train) / val of at least "
             f"{RULES['gap_large']:g} at the last epoch, larger than at the best epoch; a <b>high training loss</b> is a "
             f"training accuracy below {RULES['underfit_accuracy']:g} (classification) or a last training loss above "
             f"{RULES['underfit_loss_share']:g} of the first epoch's (regression), with a smaller gap; "
             f"<b>divergence</b> is a NaN / infinite loss or a training loss ending above "
             f"{RULES['diverge_factor']:g} times its minimum; a search's <b>best value at the grid's edge</b> is the "
             "smallest or largest value tried.</p>")
    if not findings:
        items = '<div class="finding ok">No rule fired: no large growing gap, no high training loss, no divergence.</div>'
    else:
        grouped: dict[tuple, list[str]] = {}
        for f in findings:
            grouped.setdefault((f.rule, tuple(f.suggestions)), []).append(f"{f.who}: {f.evidence}")
        items = ""
        for (rule, suggestions), evidence in grouped.items():
            shown = evidence[:6] + ([f"... and {len(evidence) - 6} more"] if len(evidence) > 6 else [])
            items += (f'<div class="finding"><b>{esc(rule)}</b><ul>' + "".join(f"<li>{esc(e)}</li>" for e in shown)
                      + "</ul>try: <ul>" + "".join(f"<li>{_code(s)}</li>" for s in suggestions) + "</ul></div>")
    return Section("next", "What to try next", items + "".join(extra or []) + rules)


def _code(text: str) -> str:
    head, sep, tail = text.partition(": ")
    return f"{esc(head)}: <code>{esc(tail)}</code>" if sep else esc(text)


def _member_names(summary: dict) -> tuple[dict[int, str], list[dict]]:
    members = summary.get("per_member", [dict(summary, member=0)])
    names = {}
    for entry in members:
        m = int(entry.get("member", 0))
        keys = [k for k in entry if k not in {"member", "train", "val", "test", "generalization_gap", "best_epoch",
                                            "stopped_early", "diverged_at_epoch"} and not isinstance(entry[k], dict)]
        label = ", ".join(f"{k}={entry[k]:.3g}" if isinstance(entry[k], float) else f"{k}={entry[k]}" for k in keys)
        names[m] = f"member {m}" + (f" ({label})" if label and len(members) > 1 else "")
    return names, members


def run_sections(path: Path) -> tuple[list[Section], list[Finding], str, dict]:
    """The sections of a run directory (also the refit run of a search)."""
    summary, recipe = _read_json(path / "summary.json"), _recipe(path)
    task, metric = summary["task"], summary["metric"]
    names, members = _member_names(summary)
    splits = [s for s in ("train", "val", "test") if s in members[0]]
    histories = _histories(path)
    best = {int(e.get("member", 0)): e.get("best_epoch") for e in members}
    diverged = {int(e.get("member", 0)): e.get("diverged_at_epoch") for e in members}
    curves, onsets, findings = _curves_section(histories, names, task, metric, recipe, best, diverged)
    header = ["member", *[f"{s} {metric}" for s in splits], *[f"{s} loss" for s in splits], "best epoch",
              "overfits from", "diverged at"]
    rows = [[names[int(e.get("member", 0))], *[e[s][metric] for s in splits], *[e[s]["loss"] for s in splits],
             e.get("best_epoch"), onsets.get(int(e.get("member", 0))), e.get("diverged_at_epoch")] for e in members]
    overview = table(header, rows, sortable=True, left=1)
    ens = summary.get("ensemble")
    if ens:
        ens_splits = [s for s in splits if s in ens]
        overview += f"<p>ensemble of {ens['members']} ({esc(ens['combine'])}):</p>" + table(
            ["", *[f"{s} {q}" for s in ens_splits for q in (metric, "loss")]],
            [[label, *[source[s][q] for s in ens_splits for q in (metric, "loss")]]
             for label, source in (("ensemble", ens), ("members' mean", ens["members_mean"]),
                                   ("best member", ens["members_best"]))], left=1)
    sections = [Section("overview", "Overview", overview), curves]
    weights = _weights_section(path, summary["dataset"])
    if weights:
        sections.append(weights)
    uncertainty = _uncertainty_section(path, summary)
    if uncertainty:
        sections.append(uncertainty)
    subtitle = (f"{summary['dataset']} ({task}), {summary['members']} member(s), {summary['epochs_run']} of "
                f"{summary['epochs_max']} epochs, {summary['parameters']:,} parameters, {summary['wall_time_s']:.1f} s")
    return sections, findings, subtitle, summary


def cv_sections(path: Path) -> tuple[list[Section], list[Finding], str]:
    result, recipe = _read_json(path / "cv.json"), _recipe(path)
    metric = result["metric"]
    per = result["per_member"]
    names = {p["member"]: f"member {p['member']} (candidate {p['candidate']}, fold {p['fold']})" for p in per}
    best = {p["member"]: p["best_epoch"] for p in per}
    diverged = {p["member"]: p["diverged_at_epoch"] for p in per}
    histories = _histories(path)
    curves, onsets, findings = _curves_section(histories, names, result["task"], metric, recipe, best, diverged)
    curves.body = ('<p class="note">In cross-validation "val" is each fold\'s stopping set, carved from its '
                   'training rows; the scored rows are not seen during training.</p>') + curves.body
    folds = table(["member", "candidate", "fold", f"fit {metric}", f"scored {metric}", "scored loss", "best epoch",
                   "overfits from", "diverged at", "dropped at"],
                  [[p["member"], p["candidate"], p["fold"], p["fit"][metric], p["scored"][metric], p["scored"]["loss"],
                    p["best_epoch"], onsets.get(p["member"]), p["diverged_at_epoch"], p["dropped_at_epoch"]]
                   for p in per], sortable=True)
    cands = _candidates_table(result["candidates"], metric, [])
    subtitle = f"{result['dataset']}: {result['scheme']}, {result['folds']} folds, {result['members']} members"
    return [Section("overview", "Folds", cands + folds), curves], findings, subtitle


def _keys(rows: list[dict]) -> list[str]:
    skip = {"candidate", "population", "best_epochs", "diverged_folds", "dropped_at_epoch", "epochs_trained", "trial",
            "pruned", "state"}
    return [k for k in rows[0] if k not in skip and not k.startswith(("cv_", "train_"))] if rows else []


def _candidates_table(rows: list[dict], metric: str, keys: list[str]) -> str:
    keys = keys or _keys(rows)
    header = ["candidate", *keys, f"train {metric}", f"cv {metric} mean", "std", "dropped at epoch", "diverged folds"]
    body = [[r.get("candidate", r.get("trial")), *[r.get(k) if not isinstance(r.get(k), list) else str(r.get(k))
                                                   for k in keys],
             r[f"train_{metric}_mean"], r[f"cv_{metric}_mean"], r[f"cv_{metric}_std"], r.get("dropped_at_epoch"),
             len(r.get("diverged_folds") or [])] for r in rows]
    return "<p class=\"note\">Click a heading to sort.</p>" + table(header, body, sortable=True)


def search_sections(path: Path) -> tuple[list[Section], list[Finding], str]:
    from ..select.search import best_index

    result = _read_json(path / "search.json")
    metric, rows = result["metric"], result["candidates"]
    keys = list(result["grid"]) if result.get("grid") else _keys(rows)
    best = best_index(rows, metric)
    findings: list[Finding] = []
    chosen = ", ".join(f"{k}={rows[best].get(k)}" for k in keys)
    body = (f"<p>chosen: candidate {rows[best].get('candidate', rows[best].get('trial'))} ({esc(chosen)}), cv {metric} "
            f"{rows[best][f'cv_{metric}_mean']:.4f} +- {rows[best][f'cv_{metric}_std']:.4f}</p>")
    numeric = [k for k in keys if all(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool) for r in rows)]
    for key in numeric:
        values = [float(r[key]) for r in rows]
        positive = [v for v in values if v > 0]
        log = bool(positive) and max(positive) / min(positive) >= 100
        if len(keys) == 1:
            body += figure(figures.regularization_path(rows, key, metric, best),
                           f"regularization path: {metric} against {key} (mean +- std over folds, dots: folds)")
        found = edge_finding(key, values, float(rows[best][key]), log=log)
        if found:
            findings.append(found)
    sections = [Section("path", "Regularization path", body)]
    if result.get("halving"):
        epochs = max((r.get("epochs_trained") or 0 for r in rows), default=1)
        label = lambda r: ", ".join(f"{k}={r.get(k)}" for k in keys)  # noqa: E731
        text = "".join(f"<p>successive halving (eta {h['eta']}): rungs at epochs {h['rungs']}, "
                       f"{h['compute_saved']:.0%} of the member-epochs saved; "
                       + "; ".join(f"at epoch {s['epoch']} dropped candidates {s['candidates']}" for s in h["steps"])
                       + "</p>" for h in result["halving"] if h)
        sections.append(Section("halving", "Successive halving",
                                text + figure(figures.halving_timeline(rows, label, epochs), "epochs each candidate trained")))
    sections.append(Section("candidates", "Every candidate", _candidates_table(rows, metric, keys)))
    subtitle = (f"{result['dataset']}: search, {result['scheme']} {result['folds']} folds, {len(rows)} candidates, "
                f"{result['members']} members")
    refit = path / "refit"
    if (refit / "summary.json").is_file():
        refit_sections, refit_findings, refit_subtitle, _ = run_sections(refit)
        for s in refit_sections:
            s.id, s.title = f"refit-{s.id}", f"Refit: {s.title}"
        refit_sections[0].body = f'<p class="note">the best candidate refit on all training rows: {esc(refit_subtitle)}</p>' + refit_sections[0].body
        sections += refit_sections
        findings += [Finding(f.rule, f"refit {f.who}", f.evidence, f.suggestions) for f in refit_findings]
    return sections, findings, subtitle


def write_report(path: str | Path) -> Path:
    """Write `<path>/report.html` for a run, cross-validation or search directory and return its path."""
    path = Path(path)
    kind = directory_kind(path)
    if kind == "run":
        sections, findings, subtitle, _ = run_sections(path)
        title = "tamenet run report"
    elif kind == "cv":
        sections, findings, subtitle = cv_sections(path)
        title = "tamenet cross-validation report"
    else:
        sections, findings, subtitle = search_sections(path)
        title = "tamenet search report"
    sections.insert(1, _findings_section(findings))
    out = path / REPORT_FILE
    atomic_write_text(out, page(f"{title}: {path.name}", subtitle, sections))
    return out


__all__ = ["REPORT_FILE", "ReportError", "diagnose_member", "directory_kind", "write_report"]
