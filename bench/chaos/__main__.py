"""`python -m bench.chaos`: run the fault suite (see bench/chaos/suite.py)."""

import sys

from bench.chaos.suite import main

if __name__ == "__main__":
    sys.exit(main())
