"""A command's flags as SageMaker hyperparameters, and back.

On the launching side, every flag of `launch-sagemaker` that is not the launcher's own (`--total_steps 1000`,
`--model_size=base`, `--train_files a b`) becomes one hyperparameter of the job, named as the flag without its dashes,
its value a string (several values: a JSON list; a flag given without a value: `"true"`). When the entry point is a
keras-albert command, the command's own parser reads the flags first, so an unknown flag or a bad value ends the
launch before anything is sent.

In the container, the hyperparameters come back either as strings (`/opt/ml/input/config/hyperparameters.json`) or
JSON-decoded (`SM_HPS`, as the SDK's container drivers set it: `"1000"` arrives as 1000, `'["a", "b"]'` as a list);
`to_flags` turns both into the same command line.
"""

import argparse
import json

from keras_albert.errors import UserInputError

# Commands that make no sense inside a training job.
NOT_IN_A_JOB = ("launch-sagemaker",)


def is_command(entry_point):
    """True when `entry_point` names a keras-albert command (else it is a script path)."""
    from keras_albert import cli

    return entry_point in cli.COMMANDS and entry_point not in NOT_IN_A_JOB


def command_parser(command):
    """A parser holding exactly the flags of `keras-albert COMMAND`, whose errors raise `UserInputError`."""
    from keras_albert import cli

    parser = argparse.ArgumentParser(prog=f"keras-albert {command}", add_help=False, allow_abbrev=False)
    cli.add_command_arguments(parser, command)

    def error(message):
        raise UserInputError(f"{message} (flags of `keras-albert {command}`; see keras-albert {command} --help)")

    parser.error = error  # after add_arguments, which may install its own
    return parser


def split_flags(tokens):
    """`["--a", "1", "--b=2", "--c", "x", "y", "--d"]` -> `[("a", ["1"]), ("b", ["2"]), ("c", ["x", "y"]), ("d", [])]`.

    A token is a flag when it starts with `--`; the tokens after it, up to the next flag, are its values (so a value
    may be a negative number).
    """
    flags = []
    for token in tokens:
        if token.startswith("--") and len(token) > 2:
            name, equals, value = token[2:].partition("=")
            flags.append((name, [value] if equals else []))
        elif flags:
            flags[-1][1].append(token)
        else:
            raise UserInputError(f"unexpected argument {token!r}: training flags are written --name value")
    return flags


def to_hyperparameters(entry_point, tokens):
    """The hyperparameters of a job whose entry point gets the flags `tokens`.

    Args:
        entry_point: str. A keras-albert command (its parser checks the flags) or a script path (flags unchecked).
        tokens: list of str. The flags as typed.

    Returns:
        dict of str to str, in the order given; a repeated flag keeps its last value, as argparse does.

    Raises:
        UserInputError: an argument that is not a flag, an unknown flag or a bad value of the command.
    """
    flags = split_flags(tokens)
    if is_command(entry_point):
        command_parser(entry_point).parse_args(tokens)
    hyperparameters = {}
    for name, values in flags:
        hyperparameters.pop(name, None)
        if not values:
            hyperparameters[name] = "true"
        elif len(values) == 1:
            hyperparameters[name] = values[0]
        else:
            hyperparameters[name] = json.dumps(values)
    return hyperparameters


def _values(value):
    """One hyperparameter's value as the strings of a command line."""
    if isinstance(value, str) and value.startswith("["):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            decoded = value
        if isinstance(decoded, list):
            value = decoded
    if isinstance(value, list):
        return [item if isinstance(item, str) else json.dumps(item) for item in value]
    return [value if isinstance(value, str) else json.dumps(value)]


def _truthy(values):
    return len(values) == 1 and values[0].strip().lower() in ("true", "1", "yes", "on")


def to_flags(command, hyperparameters):
    """The command line of `keras-albert COMMAND` that the hyperparameters stand for.

    A flag that takes no value (`store_true`) is written alone when its value is true and left out otherwise;
    every other flag is written `--name value...`.
    """
    from keras_albert import cli

    takes_no_value = {
        option[2:]
        for action in command_parser(command)._actions
        if action.nargs == 0 or isinstance(action, cli.BooleanFlag)
        for option in action.option_strings
    }
    argv = []
    for name, value in hyperparameters.items():
        values = _values(value)
        if name in takes_no_value:
            if _truthy(values):
                argv.append(f"--{name}")
        else:
            argv += [f"--{name}", *values]
    return argv
