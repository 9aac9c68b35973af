"""`python -m nas.train GENOTYPE --config CONFIG ...`: stage-2 training of a chosen network (nas/stage2.py)."""
import sys

from ..stage2 import main

sys.exit(main())
