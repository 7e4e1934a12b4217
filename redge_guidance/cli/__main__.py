"""`python -m redge_guidance.cli ...` (what `accelerate launch -m redge_guidance.cli` runs)."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
