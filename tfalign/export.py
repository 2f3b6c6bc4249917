"""``python -m tfalign.export``: the front door of the exporter (TFLite / CoreML + model contract).

Thin on purpose: the core never imports the exporters, so ``mobile_export`` is imported inside ``main()`` only.
Run ``python -m tfalign.export --help`` for the flags.
"""
import sys


def main(argv=None) -> int:
    from mobile_export.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
