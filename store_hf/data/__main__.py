"""``python -m store_hf.data describe <path>``: the data layer's own entry point."""

import sys

from ..cli import main

sys.exit(main(sys.argv[1:]))
