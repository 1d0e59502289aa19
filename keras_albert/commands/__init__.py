"""The `keras-albert` subcommands: each module turns flags into settings (`add_arguments(parser)`) and runs the
library underneath (`run(args)`, returning an exit status). This is the top layer: nothing below imports it."""
