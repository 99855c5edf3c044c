"""``python -m forge``: the forge command line."""

from forge.cli import main

raise SystemExit(main())
