"""`python -m keras_tflq.cli`: the `keras-tflq` command line."""

import sys

from keras_tflq.cli import main

sys.exit(main())
