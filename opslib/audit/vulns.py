"""Vulnerability reports from trivy and grype, read from their JSON files into one table.

Neither scanner runs here: a CI job (or a person) scans the images and hands the JSON files over.
Both formats are read into the same columns so the security-audit runbook can show one table and
one chart by image and severity, tell fixable from unfixable findings, and fail a check when a
fixable finding at or above a threshold exists.

* trivy: ``trivy image --format json`` (``SchemaVersion: 2``): ``Results[].Vulnerabilities[]`` with
  ``VulnerabilityID``, ``PkgName``, ``InstalledVersion``, ``FixedVersion``, ``Severity``.
* grype: ``grype -o json``: ``matches[].vulnerability{id, severity, fix{state, versions}}`` and
  ``matches[].artifact{name, version, type}``; the image is ``source.target.userInput``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from opslib.exceptions import BadInputFormat, BadParameter

__all__ = [
    "SEVERITIES",
    "VULN_COLUMNS",
    "fixable_at_or_above",
    "read_grype",
    "read_trivy",
    "read_vuln_report",
    "read_vuln_reports",
    "severity_rank",
    "vuln_figure",
    "vuln_summary",
]

#: Severities from worst to least; grype's "Negligible" is read as LOW.
SEVERITIES: tuple[str, ...] = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")
_RANK = {s: i for i, s in enumerate(SEVERITIES)}

VULN_COLUMNS = [
    "scanner", "report", "image", "target", "pkg_type", "vuln_id", "pkg", "installed", "fixed",
    "severity", "fixable", "status", "title",
]


def severity_rank(severity: str) -> int:
    """Rank of a severity, 0 = CRITICAL (worst); unknown names rank last.

    Args:
        severity: A severity name in any case (``"high"``, ``"Critical"``, ``"Negligible"``).

    Returns:
        Its index in :data:`SEVERITIES`.
    """
    return _RANK.get(_norm_severity(severity), len(SEVERITIES) - 1)


def _norm_severity(value: Any) -> str:
    s = str(value or "").strip().upper()
    if s == "NEGLIGIBLE":
        return "LOW"
    return s if s in _RANK else "UNKNOWN"


def _load_json(path: Path) -> Any:
    try:
        with path.open("rb") as fh:
            return json.load(fh)
    except FileNotFoundError as exc:
        raise BadInputFormat(str(path), "no such file; give the path of a trivy or grype "
                             "JSON report") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputFormat(str(path), f"not JSON ({exc}); scan with 'trivy image --format "
                             "json' or 'grype -o json'") from exc


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=VULN_COLUMNS)
    return df.astype({"fixable": bool}) if len(df) else df


def _trivy_rows(doc: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    if doc.get("SchemaVersion") != 2:
        raise BadInputFormat(str(path), f"trivy SchemaVersion {doc.get('SchemaVersion')!r} is not "
                             "supported (expected 2, trivy >= 0.20 with --format json)")
    results = doc.get("Results")
    if results is None:
        results = []
    if not isinstance(results, list):
        raise BadInputFormat(str(path), "trivy report: 'Results' is not a list")
    meta = doc.get("Metadata") or {}
    tags = meta.get("RepoTags") or []
    image = str(doc.get("ArtifactName") or (tags[0] if tags else "") or path.stem)
    rows: list[dict[str, Any]] = []
    for i, res in enumerate(results):
        if not isinstance(res, dict):
            raise BadInputFormat(str(path), f"trivy report: Results[{i}] is not an object")
        vulns = res.get("Vulnerabilities") or []
        if not isinstance(vulns, list):
            raise BadInputFormat(str(path), f"trivy report: Results[{i}].Vulnerabilities is "
                                 "not a list")
        for j, v in enumerate(vulns):
            if not isinstance(v, dict) or not v.get("VulnerabilityID") or not v.get("PkgName"):
                raise BadInputFormat(str(path), f"trivy report: Results[{i}].Vulnerabilities[{j}]"
                                     " lacks VulnerabilityID or PkgName")
            fixed = str(v.get("FixedVersion") or "")
            status = str(v.get("Status") or ("fixed" if fixed else "affected"))
            rows.append({
                "scanner": "trivy", "report": path.name, "image": image,
                "target": str(res.get("Target") or ""), "pkg_type": str(res.get("Type") or ""),
                "vuln_id": str(v["VulnerabilityID"]), "pkg": str(v["PkgName"]),
                "installed": str(v.get("InstalledVersion") or ""), "fixed": fixed,
                "severity": _norm_severity(v.get("Severity")), "fixable": bool(fixed),
                "status": status, "title": str(v.get("Title") or ""),
            })
    return rows


def _grype_rows(doc: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    matches = doc.get("matches") or []
    if not isinstance(matches, list):
        raise BadInputFormat(str(path), "grype report: 'matches' is not a list")
    source = doc.get("source") or {}
    target = source.get("target") if isinstance(source, dict) else None
    if isinstance(target, dict):
        tags = target.get("tags") or []
        image = str(target.get("userInput") or (tags[0] if tags else "") or path.stem)
    else:
        image = str(target or path.stem)
    distro = doc.get("distro") or {}
    target_name = f"{image} ({distro.get('name', '')} {distro.get('version', '')})".strip()
    rows: list[dict[str, Any]] = []
    for i, m in enumerate(matches):
        vuln = m.get("vulnerability") if isinstance(m, dict) else None
        art = m.get("artifact") if isinstance(m, dict) else None
        if not isinstance(vuln, dict) or not isinstance(art, dict) or not vuln.get("id"):
            raise BadInputFormat(str(path), f"grype report: matches[{i}] lacks vulnerability.id "
                                 "or artifact")
        fix = vuln.get("fix") or {}
        versions = [str(x) for x in (fix.get("versions") or [])]
        state = str(fix.get("state") or "unknown")
        fixable = state == "fixed" and bool(versions)
        rows.append({
            "scanner": "grype", "report": path.name, "image": image, "target": target_name,
            "pkg_type": str(art.get("type") or ""), "vuln_id": str(vuln["id"]),
            "pkg": str(art.get("name") or ""), "installed": str(art.get("version") or ""),
            "fixed": ", ".join(versions), "severity": _norm_severity(vuln.get("severity")),
            "fixable": fixable, "status": state, "title": str(vuln.get("description") or "")[:200],
        })
    return rows


def read_trivy(path: str | Path) -> pd.DataFrame:
    """Read a trivy JSON report (``--format json``, SchemaVersion 2).

    Args:
        path: The report file.

    Returns:
        One row per vulnerability (columns :data:`VULN_COLUMNS`); ``fixable`` is true when trivy
        names a ``FixedVersion``.

    Raises:
        BadInputFormat: Not JSON, not a trivy report, or another schema version.
    """
    p = Path(path)
    doc = _load_json(p)
    if not isinstance(doc, dict) or "SchemaVersion" not in doc:
        raise BadInputFormat(str(p), "not a trivy JSON report (no SchemaVersion); scan with "
                             "'trivy image --format json'")
    return _frame(_trivy_rows(doc, p))


def read_grype(path: str | Path) -> pd.DataFrame:
    """Read a grype JSON report (``grype -o json``).

    Args:
        path: The report file.

    Returns:
        One row per match (columns :data:`VULN_COLUMNS`); ``fixable`` is true when
        ``fix.state`` is ``fixed`` and fix versions are named.

    Raises:
        BadInputFormat: Not JSON or not a grype report.
    """
    p = Path(path)
    doc = _load_json(p)
    if not isinstance(doc, dict) or "matches" not in doc:
        raise BadInputFormat(str(p), "not a grype JSON report (no 'matches'); scan with "
                             "'grype -o json'")
    return _frame(_grype_rows(doc, p))


def read_vuln_report(path: str | Path) -> pd.DataFrame:
    """Read a trivy or grype JSON report, recognising the format from its content.

    Args:
        path: The report file.

    Returns:
        One row per finding (columns :data:`VULN_COLUMNS`).

    Raises:
        BadInputFormat: The file is neither a trivy (schema 2) nor a grype JSON report.
    """
    p = Path(path)
    doc = _load_json(p)
    if isinstance(doc, dict) and "SchemaVersion" in doc and "Results" in doc:
        return _frame(_trivy_rows(doc, p))
    if isinstance(doc, dict) and "matches" in doc and ("source" in doc or "descriptor" in doc):
        return _frame(_grype_rows(doc, p))
    raise BadInputFormat(str(p), "neither a trivy (SchemaVersion/Results) nor a grype "
                         "(matches/source) JSON report")


def read_vuln_reports(paths: str | Iterable[str | Path]) -> pd.DataFrame:
    """Read several reports (trivy and grype mixed) into one table.

    Args:
        paths: Paths, or one comma-separated string of paths (the notebook parameter).

    Returns:
        All findings, worst severity first.

    Raises:
        BadParameter: No path given.
        BadInputFormat: A file is not a trivy or grype JSON report.
    """
    items = [s.strip() for s in paths.split(",")] if isinstance(paths, str) else list(paths)
    items = [p for p in items if str(p)]
    if not items:
        raise BadParameter("vuln_reports", paths, "one or more comma-separated report paths")
    frames = [read_vuln_report(p) for p in items]
    df = pd.concat(frames, ignore_index=True) if frames else _frame([])
    if not len(df):
        return _frame([])
    order = df["severity"].map(severity_rank)
    return (df.assign(_r=order).sort_values(["_r", "image", "pkg", "vuln_id"])
            .drop(columns="_r").reset_index(drop=True))


def vuln_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Count findings by image, severity and fixability.

    Args:
        df: Findings from :func:`read_vuln_reports`.

    Returns:
        Columns image, severity, fixable, unfixable, total; worst severity first per image.
    """
    cols = ["image", "severity", "fixable", "unfixable", "total"]
    if not len(df):
        return pd.DataFrame(columns=cols)
    g = df.groupby(["image", "severity"])["fixable"].agg(["sum", "count"]).reset_index()
    g = g.rename(columns={"sum": "fixable", "count": "total"})
    g["fixable"] = g["fixable"].astype(int)
    g["unfixable"] = g["total"] - g["fixable"]
    g["_r"] = g["severity"].map(severity_rank)
    return g.sort_values(["image", "_r"]).drop(columns="_r")[cols].reset_index(drop=True)


def fixable_at_or_above(df: pd.DataFrame, threshold: str = "CRITICAL") -> pd.DataFrame:
    """The fixable findings whose severity is at or above a threshold.

    Args:
        df: Findings from :func:`read_vuln_reports`.
        threshold: ``CRITICAL``, ``HIGH``, ``MEDIUM`` or ``LOW`` (any case).

    Returns:
        The matching rows (empty when none).

    Raises:
        BadParameter: Unknown threshold.
    """
    t = str(threshold).strip().upper()
    if t not in _RANK or t == "UNKNOWN":
        raise BadParameter("vuln_fail_severity", threshold, "one of CRITICAL, HIGH, MEDIUM, LOW")
    if not len(df):
        return df
    mask = df["fixable"].astype(bool) & (df["severity"].map(severity_rank) <= _RANK[t])
    return df.loc[mask].reset_index(drop=True)


def vuln_figure(df: pd.DataFrame, title: str = "Vulnerabilities by image and severity") -> Any:
    """Stacked bars per image: findings by severity, fixable (solid) vs. not fixable (hatched).

    Args:
        df: Findings from :func:`read_vuln_reports`.
        title: Figure title.

    Returns:
        A ``plotly.graph_objects.Figure``.
    """
    import plotly.graph_objects as go

    colours = {"CRITICAL": "#8b0000", "HIGH": "#d62728", "MEDIUM": "#ff7f0e", "LOW": "#1f77b4",
               "UNKNOWN": "#7f7f7f"}
    summary = vuln_summary(df)
    images: Sequence[str] = sorted(summary["image"].unique()) if len(summary) else []
    fig = go.Figure()
    for sev in SEVERITIES:
        part = summary[summary["severity"] == sev].set_index("image")
        if not len(part):
            continue
        for kind, pattern in (("fixable", ""), ("unfixable", "/")):
            ys = [int(part[kind].get(img, 0)) for img in images]
            if not any(ys):
                continue
            fig.add_bar(x=list(images), y=ys, name=f"{sev} {kind.replace('unfixable', 'no fix')}",
                        marker={"color": colours[sev], "pattern": {"shape": pattern}})
    fig.update_layout(barmode="stack", title=title, xaxis_title="image",
                      yaxis_title="findings", legend_title="severity / fix")
    return fig
