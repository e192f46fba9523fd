"""`python -m keras_ptame.demo ...` is `ptame demo ...`.

A forward by module name, through `runpy`: the command line imports the
demo package, never the other way round, so this entry point imports
nothing of `keras_ptame.cli` itself.
"""

import runpy
import sys

sys.argv[1:1] = ["demo"]
runpy.run_module("keras_ptame.cli", run_name="__main__", alter_sys=True)
