"""``python -m keras_trainkit`` runs the ``trainkit`` console script."""

import sys

from keras_trainkit.cli import main

sys.exit(main())
