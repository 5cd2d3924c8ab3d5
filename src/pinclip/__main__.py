"""`python -m pinclip …` (also what `torchrun … -m pinclip train …` runs)."""

from pinclip.cli import main

main()
