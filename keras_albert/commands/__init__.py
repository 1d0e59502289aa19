"""The `keras-albert` subcommands: each module turns flags into settings (`add_arguments(parser)`) and runs the
library underneath (`run(args)`, returning an exit status). This is the top layer: nothing below imports it."""

import argparse


def parse_bool(text):
    """`true`/`false` (also 1/0, yes/no, on/off) as a bool; anything else is an `argparse` type error. The type of
    every boolean flag: `--flag`, `--flag=true`, `--flag=false`, `--flag true`."""
    value = str(text).strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_long_run_arguments(group):
    """The flags `pretrain` and `squad` share for a run left alone: the non-finite stop and resume safety."""
    group.add_argument("--max_nonfinite_steps", type=int, default=10,
                       help="Updates in a row skipped for a non-finite loss or gradients that stop the run (exit 1).")
    group.add_argument("--allow_changed_settings", type=parse_bool, nargs="?", const=True, default=False,
                       metavar="true|false",
                       help="Resume even though optimisation settings (optimizer, learning rate, schedule, batch "
                       "layout, precision) changed since the run started; each change is logged.")
