"""Every ``simxray COMMAND --help`` reads as one tool: the shared flags (``--n``, ``--config``,
``--param``, ``--out``, ``--seed``, ``--threads``, ``--device``, ``-q/--quiet``, ``-v``,
``--overwrite``) are there with the same kind of value and help that begins with the same
words (:data:`simxray.cli._common.HELP_STARTS`)."""

from __future__ import annotations

import argparse
import re

import pytest

from simxray.cli import _leaf_parsers, build_parser, main
from simxray.cli._common import HELP_STARTS

PARSER = build_parser()
LEAVES = {p.prog.removeprefix("simxray "): p for p in _leaf_parsers(PARSER)
          if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)}
#: --param that takes a prior (fit) or is worded by another module's owner: NAME=V... inside
PARAM_ELSEWHERE = {"fit", "eventsim"}


def help_entries(command: str, capsys, monkeypatch) -> dict[str, str]:
    """{flag: help text} parsed from the printed ``--help`` of ``command``."""
    monkeypatch.setenv("COLUMNS", "400")                  # one line per option
    with pytest.raises(SystemExit) as e:
        main([*command.split(), "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    entries: dict[str, str] = {}
    for line in out.splitlines():
        m = re.match(r"^  (-[^\s,]+(?: [A-Z0-9_.=:\[\]{},|a-z-]+)?(?:, -[^\s,]+(?: \S+)?)*)\s{2,}(.*)$", line)
        if not m:
            continue
        flags = re.findall(r"(?:^|, )(-{1,2}[\w-]+)", m.group(1))
        for f in flags:
            entries[f] = m.group(2)
    return entries


def test_every_command_is_listed():
    assert {"model", "predict", "simulate", "train", "fit", "validate", "train-emulator",
            "validate-emulator", "adapt", "eventsim", "train-ppad", "encode", "demo",
            "tables convert", "tables info"} <= set(LEAVES)


@pytest.mark.parametrize("command", sorted(LEAVES))
def test_shared_flags_in_help(command, capsys, monkeypatch):
    """-q/--quiet, -v/--verbose and --threads everywhere; each shared flag a command has
    begins its help with the shared words."""
    entries = help_entries(command, capsys, monkeypatch)
    for flag in ("-q", "--quiet", "-v", "--verbose", "--threads"):
        assert flag in entries, (command, flag)
    for flag, start in HELP_STARTS.items():
        if flag not in entries:
            continue
        text = entries[flag]
        if flag == "--param" and command.split()[0] in PARAM_ELSEWHERE:
            assert "NAME=V" in text, (command, text)
        else:
            assert text.startswith(start), (command, flag, text)


@pytest.mark.parametrize("command", sorted(LEAVES))
def test_shared_flags_same_kind(command):
    """The same flag takes the same kind of value everywhere: counts for -q/-v, integers for
    --n/--seed/--threads, a switch for --overwrite/--force, repeatable --param."""
    acts = LEAVES[command]._option_string_actions
    assert isinstance(acts["--quiet"], argparse._CountAction) and acts["--quiet"] is acts["-q"]
    assert isinstance(acts["--verbose"], argparse._CountAction) and acts["--verbose"] is acts["-v"]
    assert acts["--threads"].type is int and acts["--threads"].default == 1
    for flag in ("--n", "--seed"):
        if flag in acts:
            assert acts[flag].type is int, (command, flag)
    for flag in ("--overwrite", "--force"):
        if flag in acts:
            assert isinstance(acts[flag], argparse._StoreTrueAction), (command, flag)
    if "--param" in acts:
        assert isinstance(acts["--param"], argparse._AppendAction), command
    if "--out" in acts:
        assert acts["--out"].help, command


def test_demo_refuses_an_earlier_output_without_overwrite(tmp_path, capsys):
    """--overwrite means the same in every command: demo no longer writes into a non-empty
    --out folder unless asked to (one-line error, exit status 2, nothing written)."""
    out = tmp_path / "demo"
    out.mkdir()
    (out / "keep.txt").write_text("earlier")
    assert main(["demo", "--out", str(out), "--n", "16", "-q"]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
