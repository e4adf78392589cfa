"""`python -m nas` (the entry point torchrun and `nas ablate`'s stages launch)."""

import sys

from nas.core.lifeline import follow_parent

follow_parent()  # a stage of `nas ablate` dies with its driver (nas/core/lifeline.py)

from nas.cli import main  # noqa: E402  (imports torch: seconds the parent may not live)

sys.exit(main())
