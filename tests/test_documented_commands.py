"""Every command line the documentation shows names a command and flags that exist.

Collects the `keras-albert COMMAND ...` and `python examples/SCRIPT.py ...` lines of README.md, the examples'
docstrings, container/README.md and the notebooks (continuation backslashes joined), and checks each against the
real `--help` of what it calls: the subcommand must be registered and importable, and every `--flag` on the line
must appear in that help. A `launch-sagemaker` line passes its unknown flags on to the job's entry point, so they
are checked against the entry point's help.
"""

import functools
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from keras_albert import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAG = re.compile(r"(?<![\w-])(--[a-zA-Z][\w-]*)")
COMMAND = re.compile(r"(?:^|[\s;&|(`$])keras-albert\s+([a-z][\w-]*)(.*)")
SCRIPT = re.compile(r"(?:^|[\s;&|(`])python3?\s+(examples/[\w/]+\.py)(.*)")


def _documents():
    paths = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "container", "README.md")]
    paths += sorted(glob.glob(os.path.join(ROOT, "examples", "*.py")))
    paths += sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
    for path in paths:
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as file:
            text = file.read()
        if path.endswith(".ipynb"):
            cells = json.loads(text)["cells"]
            text = "\n".join("".join(cell["source"]) for cell in cells)
        elif path.endswith(".py"):
            match = re.match(r'\s*(?:r?"""(.*?)""")', text, re.S)
            text = match.group(1) if match else ""
        # Only code: fenced blocks, `inline code`, and (in docstrings) lines indented as a code block; prose that
        # mentions keras-albert by name is not a command line.
        code = re.findall(r"```[^\n]*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text)
        if not path.endswith(".md"):
            code += re.findall(r"^(?: {4,}|\t)(.*(?:\\\\?\n.*)*)", text, re.M)
        text = "\n".join(code)
        # Continuation lines: `\` at the end (`\\` inside a docstring's source) joins the next line.
        text = re.sub(r"\\\\?\n\s*", " ", text)
        yield os.path.relpath(path, ROOT), text


def _command_lines():
    lines = []
    for name, text in _documents():
        for line in text.splitlines():
            for pattern, kind in ((COMMAND, "command"), (SCRIPT, "script")):
                match = pattern.search(line)
                if match:
                    lines.append(pytest.param(kind, match.group(1), match.group(2), id=f"{name}: {line.strip()[:70]}"))
    return lines


@functools.lru_cache(maxsize=None)
def _command_flags(command):
    parser = cli.build_parser(command)
    subparsers = next(action for action in parser._actions if action.dest == "command")
    sub = subparsers.choices[command]
    return frozenset(option for action in sub._actions for option in action.option_strings)


@functools.lru_cache(maxsize=None)
def _script_flags(script):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, script), "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, f"{script} --help failed: {result.stderr[-2000:]}"
    return frozenset(FLAG.findall(result.stdout))


def _flags_used(arguments):
    # Flags inside quotes belong to a nested program (a Python one-liner), not to this command line.
    arguments = re.sub(r"'[^']*'|\"[^\"]*\"", "", arguments)
    return {flag.split("=")[0] for flag in FLAG.findall(arguments)}


def test_documentation_shows_commands():
    kinds = {param.values[0] for param in _command_lines()}
    assert kinds == {"command", "script"}, "the collector found no command lines: the patterns are broken"


@pytest.mark.parametrize("kind,name,arguments", _command_lines())
def test_documented_command_exists(kind, name, arguments):
    if kind == "script":
        assert os.path.isfile(os.path.join(ROOT, name)), f"{name} does not exist"
        known = _script_flags(name)
    else:
        assert name in cli.COMMANDS, f"`keras-albert {name}` is not a command (known: {', '.join(cli.COMMANDS)})"
        assert name in cli._available_commands(), f"`keras-albert {name}`: its module {cli.COMMANDS[name][0]} is missing"
        known = _command_flags(name)
        if name == "launch-sagemaker":
            entry = re.search(r"--entry_point[ =](\S+)", arguments)
            if entry and entry.group(1).endswith(".py"):
                known = known | _script_flags(entry.group(1))
            elif entry:
                known = known | _command_flags(entry.group(1))
    unknown = sorted(_flags_used(arguments) - known - {"--help"})
    assert not unknown, f"`{name}` does not accept {', '.join(unknown)}"

