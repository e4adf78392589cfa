"""`python -m nas` (the entry point torchrun launches)."""

import sys

from nas.cli import main

sys.exit(main())
