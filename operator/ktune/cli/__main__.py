"""`python -m ktune.cli`: the `ktune` command without its console script."""

import sys

from ktune.cli.main import main

sys.exit(main())
