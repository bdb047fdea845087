"""The documentation runs as written.

Every ```bash and ```python block of README.md and docs/**/*.md is executed: the blocks of one page in order, in
one fresh temporary working directory, with MSMAE_DATA set to the shared data folder and `msmae` on PATH (this
Python's bin folder; PYTHONPATH puts this checkout's sources first). Python blocks of a page share one namespace.
A block is left out only when the line just before it is ``<!-- notest: REASON -->``; the reason is required and
shown. The ``msmae`` command lines of every shell block, run or not, must parse and their configs and ``--set``
keys must load. README.md stays a front door (at most 12 KB), and no page speaks of how it was made.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from msmae.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^( *)```\s*(.*?)\s*$")  # an opening fence (indented inside a list item) and its info
CODE_DIRECTIVES = ("{code-block}", "{code}", "{sourcecode}")  # MyST: ```{code-block} bash is a bash block
# Names a highlighter treats as shell or Python but the runner would silently not run: use bash or python.
NOT_RUN_ALIASES = {"sh", "shell", "zsh", "console", "shell-session", "bash-session", "py", "python3", "pycon",
                   "ipython", "ipython3"}
NOTEST = re.compile(r"^<!--\s*notest(?::\s*(.*?))?\s*-->\s*$")
RUN = ("bash", "python")
README_LIMIT = 12 * 1024
BLOCK_TIMEOUT_S = 300


@dataclass
class Block:
    page: str
    line: int
    lang: str
    code: str
    notest: str | None  # the reason, when the block is not run


def pages() -> list[Path]:
    return [REPO / "README.md"] + sorted(p for p in (REPO / "docs").rglob("*.md") if "_build" not in p.parts)


def blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, info = len(m.group(1)), m.group(2).split()
        lang = info[1] if len(info) > 1 and info[0] in CODE_DIRECTIVES else (info[0] if info else "")
        start = i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        note = NOTEST.match(lines[start - 1].strip()) if start else None
        code = "\n".join(line[indent:] if line[:indent].isspace() else line for line in lines[start + 1:j])
        page = str(path.relative_to(REPO)) if REPO in path.parents else path.name
        out.append(Block(page, start + 1, lang, code + "\n", None if note is None else (note.group(1) or "")))
        i = j + 1
    return out


ALL = {str(p.relative_to(REPO)): blocks(p) for p in pages()}
RUNNABLE = [page for page, bs in ALL.items() if any(b.lang in RUN and b.notest is None for b in bs)]


def test_every_notest_gives_a_reason_and_marks_a_runnable_block():
    for page, bs in ALL.items():
        for b in bs:
            if b.notest is not None:
                assert b.notest.strip(), f"{page}:{b.line}: <!-- notest: REASON --> needs its reason"
                assert b.lang in RUN, f"{page}:{b.line}: notest before a ```{b.lang} block, which never runs"
    lines = [line for p in pages() for line in p.read_text(encoding="utf-8").splitlines()]
    assert sum(bool(re.match(r"\s*<!--\s*notest", line)) for line in lines) == sum(b.notest is not None for bs in ALL.values() for b in bs), \
        "a notest comment that is not on the line just before a code block"


def test_blocks_are_found_in_lists_and_in_myst_directives(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("1. a step:\n\n   <!-- notest: a reason -->\n   ```bash\n   msmae --version\n   ```\n\n"
                    "   - nested:\n\n     ```python\n     x = 1\n     ```\n\n"
                    "```{code-block} python\nprint(1)\n```\n\n```text\n```bash\n```\n")
    got = [(b.lang, b.code, b.notest) for b in blocks(page)]
    assert got == [("bash", "msmae --version\n", "a reason"), ("python", "x = 1\n", None),
                   ("python", "print(1)\n", None), ("text", "```bash\n", None)]


def test_every_code_block_names_a_language_the_runner_understands():
    for page, bs in ALL.items():
        for b in bs:
            assert b.lang, f"{page}:{b.line}: a code block without a language (bash, python, text, yaml, json, ...)"
            assert b.lang not in NOT_RUN_ALIASES, \
                f"{page}:{b.line}: ```{b.lang} is never run: write ```bash or ```python (or ```text for output)"


def test_readme_is_a_front_door():
    size = (REPO / "README.md").stat().st_size
    assert size <= README_LIMIT, f"README.md is {size} bytes; at most {README_LIMIT} (move detail into docs/)"
    readme = ALL["README.md"]
    assert any(b.lang == "bash" and b.notest is None and "msmae finetune islr" in b.code for b in readme)
    assert any(b.lang == "python" and b.notest is None for b in readme)


INTERNAL = re.compile(r"\b(sessions?|issues?)\b|\bthis\s+time\b|\bwe\s+were\s+told\b|\bprevious\s+releases?\b"
                      r"|\bso\s+far\b", re.I)
# What may stay: a link to an issue tracker (pose-format's issues are not ours); a cluster's interactive or login
# session; a program that issues a warning; "so far" inside an algorithm (the rank with the fewest windows so far).
ALLOWED = re.compile(r"https?://\S*/issues\b\S*"
                     r"|\b(interactive|login|ssh|tmux|screen|salloc|shell|terminal)\s+sessions?\b"
                     r"|\bissues?\s+(a|an|one)\s+(warning|error|message)"
                     r"|\b(fewest|most|least|best|largest|smallest|longest|shortest)\s+(\w+\s+){0,2}so\s+far\b", re.I)


def internal_wording(text: str) -> list[tuple[int, str]]:
    """(line, words) of every phrase about how msmae was made; phrases may run across line breaks."""
    masked = ALLOWED.sub(lambda m: re.sub(r"\S", "x", m.group(0)), text)  # same length: line numbers hold
    return [(masked.count("\n", 0, m.start()) + 1, " ".join(m.group(0).split())) for m in INTERNAL.finditer(masked)]


def test_internal_wording_is_caught_and_ordinary_words_are_not():
    for bad in ("AMD EPYC this time", "not re-run this session", "we were\ntold to expect", "the issue's targets",
                "the previous\nrelease's code", "no GPU was available so far", "Issue 25", "the sessions"):
        assert internal_wording(bad), bad
    for fine in ("https://github.com/sign-language-processing/pose/issues/12", "the rank with the fewest\nwindows so far",
                 "start an interactive session on a node", "msmae issues a warning", "a timestamp", "tissues",
                 "this timeline", "the release notes"):
        assert not internal_wording(fine), fine


@pytest.mark.parametrize("page", list(ALL))
def test_no_internal_wording(page):
    found = internal_wording((REPO / page).read_text(encoding="utf-8"))
    assert not found, f"{page}: wording from how msmae was made, not for its users: " + \
        "; ".join(f"line {n}: {w!r}" for n, w in found)


def _command_lines(code: str) -> list[str]:
    cmds = []
    for line in re.sub(r"\\\n\s*", " ", code).splitlines():
        line = line.split(" #")[0].strip()
        if line.startswith("msmae "):
            cmds.append(line)
        elif "-m msmae " in line:
            cmds.append("msmae " + line.split("-m msmae ", 1)[1])
    return cmds


SHELL_COMMANDS = sorted({(page, c) for page, bs in ALL.items() for b in bs if b.lang == "bash"
                         for c in _command_lines(b.code)})


def test_the_documentation_shows_every_command():
    shown = {" ".join(shlex.split(c)[1:3]) if shlex.split(c)[1] == "finetune" else shlex.split(c)[1]
             for _, c in SHELL_COMMANDS}
    from test_help import COMMANDS

    assert set(COMMANDS) <= shown, f"commands no page shows: {sorted(set(COMMANDS) - shown)}"


@pytest.mark.parametrize("page,cmd", SHELL_COMMANDS)
def test_documented_command_parses_and_its_config_loads(page, cmd):
    argv = [a for a in shlex.split(cmd, comments=True)[1:] if a != "..."]
    for stop in (">", "|", "&&", ";"):
        argv = argv[:argv.index(stop)] if stop in argv else argv
    # shell variables ($MSMAE_DATA, $SLURM_CPUS_PER_TASK): their value where set, else a stand-in that parses
    argv = [re.sub(r"\$\{?(\w+)\}?", lambda m: os.environ.get(m.group(1), "1"), a) for a in argv]
    if argv in (["--version"], ["--help"]) or "--help" in argv:
        return
    args = build_parser().parse_args(argv)  # SystemExit (an argparse error) fails the test
    assert getattr(args, "func", None) is not None, f"{page}: {cmd}"
    if args.command in ("pretrain", "finetune", "probe"):
        from msmae.config import load_config

        if args.command == "pretrain":
            from msmae.tasks.pretrain import PretrainConfig as cls
        elif getattr(args, "task", None) == "slt":
            from msmae.tasks.slt import SltConfig as cls
        else:
            from msmae.tasks.islr import IslrConfig as cls
        load_config(cls, args.config, args.overrides)


def _env(tmp: Path) -> dict:
    env = dict(os.environ)
    env["MSMAE_DATA"] = str(SHARED_DATA)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src")] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("OMP_NUM_THREADS", "2")
    env["MPLBACKEND"] = "Agg"
    env["HOME"] = str(tmp / ".home")  # a block that writes to ~ writes into the temporary folder
    return env


def _untouchable() -> dict:
    """What a page must not change: every file of the shared data (size, mtime, mode) and the checkout's
    ``git status`` (a block writing into the repository instead of its temporary folder shows there)."""
    state = {str(p): (st.st_size, st.st_mtime_ns, st.st_mode)
             for p in sorted(SHARED_DATA.rglob("*")) for st in [p.lstat()]}
    if (REPO / ".git").exists() and shutil.which("git"):
        state["git status"] = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO,
                                             text=True, capture_output=True).stdout
    return state


@pytest.mark.parametrize("page", RUNNABLE)
def test_page_runs_as_written(page, tmp_path, monkeypatch, capsys):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the documentation runs on the shared data, not found at {SHARED_DATA} (set MSMAE_SHARED_DATA)")
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / ".home").mkdir()
    env = _env(tmp_path)
    monkeypatch.chdir(work)
    for k in ("MSMAE_DATA", "PATH", "PYTHONPATH", "HOME"):
        monkeypatch.setenv(k, env[k])
    namespace: dict = {"__name__": "__main__"}
    before = _untouchable()
    for b in ALL[page]:
        if b.lang not in RUN:
            continue
        if b.notest is not None:
            print(f"{page}:{b.line}: not run: {b.notest}")
            continue
        t0 = time.monotonic()
        where = f"{page}, line {b.line}"
        if b.lang == "bash":
            r = subprocess.run(["bash", "-euo", "pipefail", "-c", b.code], cwd=work, env=env, text=True,
                               capture_output=True, timeout=BLOCK_TIMEOUT_S)
            assert r.returncode == 0, f"{where}: exit status {r.returncode}\n{b.code}\n--- stdout\n{r.stdout}" \
                                      f"\n--- stderr\n{r.stderr[-4000:]}"
        else:
            exec(compile(b.code, where, "exec"), namespace)
        print(f"{where}: {b.lang} block ran in {time.monotonic() - t0:.1f} s")
    after = _untouchable()
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"{page} changed what it must only read (shared data or the checkout): {changed[:10]}"
