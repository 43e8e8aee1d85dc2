"""``python -m layerscope`` (and ``torchrun -m layerscope``) runs the CLI."""

from .cli.main import main

if __name__ == "__main__":
    main(prog_name="layerscope")
