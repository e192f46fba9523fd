"""`python -m keras_ptame.cli ...`: the `ptame` command."""

import sys

from keras_ptame.cli import main

sys.exit(main())
