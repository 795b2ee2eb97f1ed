"""Allow ``python -m posthouse``."""

from posthouse.cli.main import main

raise SystemExit(main())
