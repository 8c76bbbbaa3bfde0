from opslib.runbook.cli import main

raise SystemExit(main())
