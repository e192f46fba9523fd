"""`python -m keras_ptame.demo ...` is `ptame demo ...`."""

import sys

from keras_ptame import cli

sys.exit(cli.main(["demo", *sys.argv[1:]]))
