"""``python -m mvtec_ref`` = ``mvtec-ref`` (e.g. under ``torchrun -m mvtec_ref train-baseline``)."""

from mvtec_ref.cli import main

main()
