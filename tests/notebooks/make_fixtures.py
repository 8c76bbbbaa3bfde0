"""Write the small notebooks the runner tests execute: ``python tests/notebooks/make_fixtures.py``.

They follow the runbook conventions (title + one-line description, one ``parameters`` cell with
typed defaults, ``output_dir = ""``) and exercise one runner behaviour each. Kept as code so the
fixtures can be regenerated; the ``.ipynb`` files are committed with outputs stripped.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

COMMON_PARAMS = '''project = "shop"  # compose project
docker_url = ""  # empty = DOCKER_HOST / default socket
output_dir = ""  # opslib run sets it to the run's folder
'''


def _nb(title: str, description: str, params: str, *cells: str) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells.append(new_markdown_cell(f"# {title}\n{description}\n\nA test fixture of the runner."))
    p = new_code_cell(COMMON_PARAMS + params)
    p.metadata["tags"] = ["parameters"]
    nb.cells.append(p)
    nb.cells.append(new_code_cell("from opslib import report"))
    for src in cells:
        nb.cells.append(new_markdown_cell(src[2:]) if src.startswith("#!") else new_code_cell(src))
    return nb


FIXTURES: dict[str, nbformat.NotebookNode] = {
    "ok": _nb(
        "OK fixture", "Records values and passes every check.",
        'count = 3  # how many items\nratio = 0.5  # a float\nenabled = True  # a bool\n'
        'label = "demo"  # a string\ntags = ["a", "b"]  # a list\nlimits = {"cpu": 1}  # a dict\n',
        "#!## Record\nRecords a few values.",
        'report.record("count_doubled", count * 2, unit="items")\n'
        'report.record("ratio", ratio)\nreport.record("label", label)\n'
        'report.record("n_tags", len(tags))',
        "#!## Check\nOne passing check; writes a file into the run folder.",
        'report.check("count_positive", count > 0, f"count={count} > 0")\n'
        'folder = report.output_dir(output_dir, "ok")\n'
        '(folder / "artefact.txt").write_text(f"enabled={enabled} limits={limits}")\n'
        'print("wrote", folder / "artefact.txt")',
    ),
    "raises": _nb(
        "Raises fixture", "A cell raises after a value was recorded.", "",
        'report.record("before_error", 1)',
        'raise ValueError("the disk is on fire")',
        'report.record("after_error", 2)',
    ),
    "failed_check": _nb(
        "Failed check fixture", "Runs to the end but one check fails.",
        "threshold = 80  # percent\n",
        'report.record("used_pct", 93.5, unit="%")',
        "used = 93.5\n"
        'report.check("below_threshold", used < threshold, f"used {used}% < {threshold}%",\n'
        '             data={"used": used})\nreport.check("always_ok", True, "sanity")',
    ),
    "not_run": _nb(
        "Not-run fixture", "One check passes and one cannot run; nothing fails.", "",
        'report.check("ran_ok", True, "sanity")\n'
        'report.not_run("needs_tool", "frobnicate is not installed: apt-get install frobnicate")',
    ),
    "sleeps": _nb(
        "Sleep fixture", "Sleeps for a while (timeout tests).",
        "seconds = 60.0  # how long to sleep\n",
        'report.record("started", True)',
        "import time\n\ntime.sleep(seconds)",
        'report.record("finished", True)',
    ),
    "dies": _nb(
        "Dying kernel fixture", "The kernel process kills itself.", "",
        'report.record("before_death", 1)',
        "import os\nimport signal\n\nos.kill(os.getpid(), signal.SIGKILL)",
    ),
    "figures": _nb(
        "Figures fixture", "Shows N plotly figures with report.show and one with fig.show().",
        "n_figures = 1  # figures shown through opslib.report.show\n"
        "plain_show = True  # also show one figure the plain plotly way (fig.show())\n",
        "import plotly.graph_objects as go\n\n"
        "for i in range(n_figures):\n"
        "    ys = [(j * (i + 1)) % 17 for j in range(50)]\n"
        "    fig = go.Figure(go.Scatter(x=list(range(50)), y=ys))\n"
        '    fig.update_layout(title=f"opslib figure {i}")\n'
        "    report.show(fig)",
        "if plain_show:\n"
        '    plain = go.Figure(go.Bar(x=["a", "b", "c"], y=[3, 1, 2]))\n'
        '    plain.update_layout(title="plain fig.show")\n'
        "    plain.show()",
        'report.record("figures", n_figures)',
    ),
    "secret": _nb(
        "Secret fixture", "Prints, records, plots and raises with its secret parameters.",
        'db_password = "changeme"  # a secret by its name\n'
        'note = ""  # not secret by name; the test passes --secret note\n'
        'api_token = ""  # a secret read from the environment (-p api_token env:VAR)\n',
        'print("connecting with", db_password, "note", note, "token", api_token)\n'
        'report.record("dsn", f"postgresql://shop:{db_password}@db/shop")\n'
        'report.record("note_echo", note)\n'
        'report.check("token_echo", True, f"token is {api_token}")',
        "import pandas as pd\nimport plotly.graph_objects as go\n\n"
        "fig = go.Figure(go.Bar(x=[db_password, note], y=[1, 2]))\n"
        "fig.update_layout(title=api_token)\n"
        "report.show(fig)\n"
        'report.table(pd.DataFrame({"secret": [db_password, note, api_token]}))',
        'raise RuntimeError(f"login failed for {db_password} / {note} / {api_token}")',
    ),
}


def main() -> None:
    for name, nb in FIXTURES.items():
        nbformat.validate(nb)
        nbformat.write(nb, HERE / f"{name}.ipynb")
        print("wrote", HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
