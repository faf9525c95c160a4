"""``python -m dsr.cli``: the dsr command."""

from dsr.cli.main import main

raise SystemExit(main())
