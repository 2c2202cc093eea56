"""``python -m keras_trainkit`` runs the ``trainkit`` console script.

It imports the whole package (and TensorFlow) before parsing; ``trainkit`` and
``python -m keras_trainkit_cli`` parse first and keep TensorFlow's start-up lines
off the terminal (see ``keras_trainkit_cli``).
"""

import sys

from keras_trainkit.cli import main

sys.exit(main())
