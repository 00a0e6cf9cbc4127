"""`python -m labctl.lab.traffic`: the lab's client traffic generator (see the package)."""

import sys

from labctl.lab.traffic import main

sys.exit(main())
