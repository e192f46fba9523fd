"""`python -m keras_ptame.evaluation ...` is `ptame evaluate ...`."""

import sys

from keras_ptame import cli

sys.exit(cli.main(["evaluate", *sys.argv[1:]]))
