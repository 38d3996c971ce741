"""``python -m raddino`` (and ``torchrun -m raddino``) runs the command line."""

from raddino.cli import main

main()
