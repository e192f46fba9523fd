"""`python -m keras_ptame.evaluation ...` is `ptame evaluate ...`.

A forward by module name, through `runpy`: the command line imports the
evaluation package, never the other way round, so this entry point imports
nothing of `keras_ptame.cli` itself.
"""

import runpy
import sys

sys.argv[1:1] = ["evaluate"]
runpy.run_module("keras_ptame.cli", run_name="__main__", alter_sys=True)
