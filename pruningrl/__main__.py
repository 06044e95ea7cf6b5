"""``python -m pruningrl``: the command line (see ``pruningrl.cli``)."""

from pruningrl.cli import main

raise SystemExit(main())
