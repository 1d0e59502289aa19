"""Every flag of the 2020 reference's commands (../shared/reference/seed-README.md, copied as
tests/fixtures/reference_seed_readme.md) is a flag of ours under its spelling there: the launcher's own flags are the
launcher's, the others are flags of the command its entry point names, registered under that exact spelling (not
taken as an abbreviation), and an alias sets the same setting as our name for it. Boolean flags take `--flag`,
`--flag=true`, `--flag=false` and `--flag true`; the reference's flags that mean nothing here warn or are refused."""

import os
import re
import shlex
import sys

import pytest

from keras_albert import cli

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "reference_seed_readme.md")
SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference", "seed-README.md")
ENTRY_POINTS = {"run_pretraining.py": "pretrain", "run_squad.py": "squad"}


def _readme():
    with open(FIXTURE, encoding="utf-8") as file:
        return file.read()


def reference_commands(text):
    """(command, [flag tokens]) of each code block of the README that launches a job (it names an --entry_point).

    The block's lines are joined (a missing trailing backslash, as in the README's phase 2, does not cut a command
    in two), `${VAR}` is replaced by the README's `export VAR=value` where it sets one, and what precedes the first
    flag (`python -m albert.launch_sagemaker`) is dropped."""
    exports = dict(re.findall(r"^export (\w+)=(\S*)$", text, flags=re.M))
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        if "--entry_point" not in block:
            continue
        block = re.sub(r"\$\{(\w+)\}", lambda match: exports.get(match.group(1)) or match.group(0), block)
        tokens = shlex.split(block.replace("\\\n", " "))
        tokens = tokens[next(i for i, token in enumerate(tokens) if token.startswith("--")):]
        entry_point = next(token.split("=", 1)[1] for token in tokens if token.startswith("--entry_point="))
        commands.append((ENTRY_POINTS[os.path.basename(entry_point)], tokens))
    return commands


def _flag(token):
    return token.split("=", 1)[0]


def test_the_fixture_is_the_reference_readme():
    if os.path.isfile(SHARED):  # the shared copy is outside the repository; CI has only the fixture
        with open(SHARED, encoding="utf-8") as file:
            assert file.read() == _readme()


def test_the_readme_commands_are_found():
    commands = reference_commands(_readme())
    assert [command for command, _ in commands] == ["pretrain", "squad", "pretrain", "pretrain", "squad", "squad"]
    flags = {_flag(token) for _, tokens in commands for token in tokens}
    # The flags the brief names, among the 22 the commands use.
    assert {"--squad_freq", "--name", "--checkpoint_path", "--load_from", "--run_name"} <= flags
    assert len(flags) == 22, sorted(flags)


@pytest.mark.parametrize("index", range(6))
def test_every_flag_of_the_reference_commands_is_accepted(index):
    command, tokens = reference_commands(_readme())[index]
    launcher = cli.build_parser("launch-sagemaker")
    launched = launcher.parse_args(["launch-sagemaker", *tokens])
    training = launched.training_flags
    launcher_flags = {_flag(token) for token in tokens} - {_flag(token) for token in training}
    assert launcher_flags <= {"--source_dir", "--entry_point", "--sm_job_name", "--instance_type", "--instance_count"}

    parser = cli.build_parser(command)
    registered = parser._subparsers._group_actions[0].choices[command]._option_string_actions
    for token in training:
        if token.startswith("--"):
            assert _flag(token) in registered, f"{_flag(token)} is not a flag of keras-albert {command}"
    args = parser.parse_args([command, *training])
    # The entry point's script (examples/, the reference's run_pretraining.py / run_squad.py) takes them too.
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    try:
        script = __import__({"pretrain": "run_pretraining", "squad": "run_squad"}[command])
    finally:
        sys.path.pop(0)
    script_args = script.parse_args(training)
    assert {k: v for k, v in vars(script_args).items() if k in vars(args)} == {
        k: v for k, v in vars(args).items() if k in vars(script_args)}

    # Each flag sets the setting that our own name for it sets, to the same value.
    module = __import__(cli.COMMANDS[command][0], fromlist=["settings_from_args"])
    for token in training:
        if not token.startswith("--"):
            continue
        flag, value = token.split("=", 1)
        action = registered[flag]
        ours = "--" + action.dest
        if ours == flag:
            continue
        assert ours in registered, (flag, ours)
        via_alias = parser.parse_args([command, flag, value])
        via_ours = parser.parse_args([command, ours, value])
        assert vars(via_alias) == vars(via_ours), flag
        assert module.settings_from_args(via_alias) == module.settings_from_args(via_ours), flag


def test_phase_1_sets_what_its_flags_say():
    _, tokens = reference_commands(_readme())[2]
    parser = cli.build_parser("pretrain")
    args = parser.parse_args(["pretrain", *cli.build_parser("launch-sagemaker").parse_args(
        ["launch-sagemaker", *tokens]).training_flags])
    from keras_albert.commands.pretrain import settings_from_args

    settings = settings_from_args(args)
    assert settings.run_name == "myberttrainingphase1"  # --run_name wins over --name, as in the reference
    assert (settings.squad_frequency, settings.total_steps, settings.max_seq_length) == (0, 14076, 128)
    assert (settings.model_type, settings.load_from, settings.gradient_accumulation_steps) == ("bert", "scratch", 4)
    # --name alone names the run, in either order with --run_name the latter wins.
    assert settings_from_args(parser.parse_args(["pretrain", "--name", "job"])).run_name == "job"
    assert settings_from_args(parser.parse_args(["pretrain", "--name", "a", "--run_name", "b"])).run_name == "b"


def _boolean_flags(command):
    sub = cli.build_parser(command)._subparsers._group_actions[0].choices[command]
    return [action.option_strings[0] for action in sub._actions
            if action.option_strings and action.nargs == "?" and action.const is True]


@pytest.mark.parametrize("command", ["pretrain", "squad", "create-pretraining-data", "train-tokenizer", "export",
                                     "launch-sagemaker"])
def test_boolean_flags_take_every_spelling(command):
    flags = _boolean_flags(command)
    if command in ("pretrain", "create-pretraining-data", "launch-sagemaker"):
        assert flags, command
    parser = cli.build_parser(command)
    sub = parser._subparsers._group_actions[0].choices[command]
    required = [part for action in sub._actions if action.required for part in (action.option_strings[0], "x")]
    for flag in flags:
        dest = next(a.dest for a in sub._actions if flag in a.option_strings)
        for argv, expected in (([flag], True), ([f"{flag}=true"], True), ([f"{flag}=false"], False),
                               ([flag, "true"], True), ([flag, "false"], False), ([f"{flag}=True"], True)):
            args, _ = parser.parse_known_args([command, *required, *argv])
            assert getattr(args, dest) is expected, (flag, argv)


def test_reference_only_flags_alias_warn_or_refuse(capsys):
    parser = cli.build_parser("pretrain")
    for argv in (["--skip_xla"], ["--skip_xla=true"], ["--skip_xla", "true"]):
        assert parser.parse_args(["pretrain", *argv]).jit_compile == "false"
    assert parser.parse_args(["pretrain", "--skip_xla=false"]).jit_compile == "auto"
    args = parser.parse_args(["pretrain", "--eager=true"])
    assert not hasattr(args, "eager")
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("keras-albert pretrain: warning: --eager is ignored: ")
    for flag, advice in (("--fsx_prefix=/fsx", "--train_files"), ("--attention_probs_dropout_prob=0.1",
                                                                 "--hidden_dropout_prob"),
                         ("--evaluate_frequency=5000", "--validation_frequency")):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(["pretrain", flag])
        assert exit_.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and advice in error[0] and "not supported" in error[0], error
