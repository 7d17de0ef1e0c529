"""``python -m feat3d`` (and ``torchrun -m feat3d train ...``) runs the command line."""

from feat3d.cli import main

main()
