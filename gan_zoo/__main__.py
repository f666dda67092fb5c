"""`python -m gan_zoo` runs the CLI (also what torchrun launches)."""

from .cli import main

if __name__ == "__main__":
    main()
