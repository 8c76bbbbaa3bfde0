from opslib.cli import main

raise SystemExit(main())
