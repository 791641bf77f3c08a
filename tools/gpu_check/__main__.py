"""python -m tools.gpu_check: see tools/gpu_check/check.py."""

import sys

from tools.gpu_check.check import main

sys.exit(main())
