"""Keep pytest/nbval from collecting the runner fixture notebooks (they fail or sleep on
purpose; the runner tests execute them)."""

collect_ignore_glob = ["*.ipynb", "make_fixtures.py"]
