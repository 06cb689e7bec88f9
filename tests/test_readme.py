"""The README runs as written.

Every ```python block of README.md is executed, in order, in one namespace (as a notebook
would run them) inside a temporary directory. A block that cannot run standalone must say
so with ``<!-- not-run: reason -->`` on the line before its fence; any other block that
fails fails this test. Shell blocks are not run, but every ``fedcredit <subcommand>`` the
README names must exist: ``fedcredit <subcommand> --help`` exits 0.

The snippets use 1024-bit keys with ``insecure_key=True``: INSECURE, for tests only.
"""
from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

NOT_RUN = re.compile(r"<!--\s*not-run:\s*(?P<reason>\S.*?)\s*-->")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
SHELL = {"bash", "sh", "shell", "console", "ini"}  # ini: systemd units name the command too
#: ``fedcredit`` as a command (start of line, after a space, ``/``, ``&&``, ``;`` ...) and the
#: lower-case words after it, up to the first option or argument
COMMAND = re.compile(r"(?:^|(?<=[\s/;&|(`]))fedcredit((?:[ \t]+[a-z][a-z0-9-]*)+)")
#: how the CLI is invoked: the ``fedcredit`` entry point is ``fedcredit.cli:main``
CLI = [sys.executable, "-c", "import sys; from fedcredit.cli import main; sys.exit(main())"]


@dataclass
class Block:
    line: int  # README line of the first code line (1-based)
    info: str
    code: str
    not_run: str | None


def _parse(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m["fence"], m["info"].lower()
        prev = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
        marker = NOT_RUN.search(prev)
        start = i + 1
        i = start
        while i < len(lines) and not lines[i].lstrip().startswith(fence):
            i += 1
        assert i < len(lines), f"README.md:{start}: unclosed ``` block"
        blocks.append(Block(start + 1, info, "\n".join(lines[start:i]) + "\n",
                            marker["reason"] if marker else None))
        i += 1
    return blocks


BLOCKS = _parse(README.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b.info in ("python", "py", "python3")]


def _commands() -> dict[tuple[str, ...], int]:
    """Each ``fedcredit`` subcommand chain named in the README's shell blocks, indented code
    blocks and inline code, with the first line naming it."""
    spans: list[tuple[int, str]] = []
    for b in BLOCKS:
        if b.info in SHELL:
            spans += [(b.line + k, ln) for k, ln in enumerate(b.code.splitlines())]
    text = README.read_text(encoding="utf-8").splitlines()
    in_fence = False
    for n, ln in enumerate(text, 1):
        if FENCE.match(ln):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if ln.startswith("    "):  # an indented code block
            spans.append((n, ln))
        spans += [(n, code) for code in re.findall(r"`([^`]+)`", ln)]
    found: dict[tuple[str, ...], int] = {}
    for n, s in spans:
        for m in COMMAND.finditer(s):
            found.setdefault(tuple(m[1].split()), n)
    return found


COMMANDS = _commands()


def test_readme_has_runnable_python():
    assert PYTHON, "README.md has no ```python block"
    skipped = [b for b in PYTHON if b.not_run]
    assert len(skipped) < len(PYTHON), "every README python block is marked not-run"


def test_not_run_markers_sit_on_python_blocks():
    text = README.read_text(encoding="utf-8")
    assert text.count("not-run:") == sum(1 for b in BLOCKS if b.not_run), \
        "a <!-- not-run: ... --> marker that does not sit right before a fence"
    stray = [b.line for b in BLOCKS if b.not_run and b not in PYTHON]
    assert not stray, f"not-run markers on non-python blocks at README.md lines {stray}"


def test_readme_points_at_no_missing_file():
    text = README.read_text(encoding="utf-8")
    # spelt in pieces so that a grep for these names finds only real references
    for ref in ("OPERATORS" ".md", "DESIGN" ".md", "../" "shared"):
        assert ref not in text, f"README.md refers to {ref}, which the repository lacks"


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets save files (model.json) in the working directory
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "__readme__"}
    for b in PYTHON:
        if b.not_run:
            continue
        # pad so that tracebacks show README.md line numbers
        code = compile("\n" * (b.line - 1) + b.code, str(README), "exec")
        try:
            exec(code, namespace)
        except Exception as e:  # noqa: BLE001 - reported with the block's README line
            raise AssertionError(
                f"the ```python block at README.md:{b.line} fails ({type(e).__name__}: {e}); "
                "fix it, or mark it with <!-- not-run: reason --> before its fence") from e


def test_readme_names_cli_commands():
    assert COMMANDS, "README.md names no fedcredit subcommand"


def _help(chain: tuple[str, ...]) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *chain, "--help"], capture_output=True, text=True,
                          timeout=120, cwd=README.parent)


@pytest.fixture(scope="module")
def cli_help() -> dict[tuple[str, ...], subprocess.CompletedProcess]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(COMMANDS, pool.map(_help, COMMANDS)))


@pytest.mark.parametrize("chain", sorted(COMMANDS), ids=" ".join)
def test_readme_cli_command_exists(chain, cli_help):
    r = cli_help[chain]
    where = f"README.md:{COMMANDS[chain]}: fedcredit {' '.join(chain)}"
    assert r.returncode == 0, f"{where} --help exits {r.returncode}:\n{r.stderr[-2000:]}"
    usage = " ".join(r.stdout.split())
    # every word is a subcommand, not an argument a parent would swallow
    assert f"usage: fedcredit {' '.join(chain)}" in usage, f"{where}: no such subcommand:\n{usage[:300]}"
