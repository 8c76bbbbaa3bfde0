"""What notebooks and the CLI use: the report helpers, the headless runner, the HTML report,
the runbook catalog, schedules and the ``opslib`` command. No domain package imports this one.
"""
