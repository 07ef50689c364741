"""Docs that cannot rot: the shell commands in README.md and docs/*.md are checked against the code, never run.

Which lines: fenced blocks tagged bash, sh, shell or console, and untagged blocks whose every non-blank line is a
comment, a `$ ` prompt or starts with a known command (file trees, tables and output are skipped). In console
blocks only `$ ` lines count. A line ending in `\\` continues on the next; `#` starts a comment (shell quoting
rules, via shlex); `&&`, `||`, `;` and `|` split a line into commands; leading `VAR=value` words are env prefixes.
`<...>` placeholders, `...` (elided words) and words holding `$` (variables, `$(...)`) stand for any value.

What is checked, per command:
  make     every target is a rule target or .PHONY name of the Makefile (pattern and file rules are not listed:
           name them and the test fails), every `VAR=value` argument names a variable the Makefile assigns
           (`=`, `?=`, `:=`, `+=`, `export`/`override`) or references as `$(VAR)`; flags (-j 8, -n, ...) are free.
  python   (python, python3, .venv/bin/python) NN_*.py and `-m common.X`: the arguments go through the stage's
           own parser, common.config.parse_config, with the config class its main() passes it (read from main's
           source, evaluated in the imported module; the module is imported, main is not run), and the unlearning
           stages' check_config (method names, value ranges). Placeholder values are replaced by the field's
           default first. Any other script (bench/, tests/): it exists, and its `--flags` are among the strings
           its `add_argument(...)` calls name (read with ast, nothing imported).
  paths    every word that looks like a relative path (has a `/` or a file extension such as .py/.json/.png) and
           every `VAR=`/`--flag=` value that does, exists in the repo (globs must match something). Not checked:
           absolute paths, `../` paths, paths under results*/ or data/, words with `:` (hosts, URLs), and outputs:
           the word after --out / --results / --tuned-dir, a redirection's file, the value of RESULTS= / SMOKE_DIR= /
           TUNED_DIR=, every argument of mkdir / touch / tee and the last argument of cp / mv / rsync / ln.
  links    every relative markdown link `[text](target)` / `![alt](target)` of a page points at a file that exists
           (relative to the page; `#anchors` and URLs are not followed).
Not checked: comments, inline `code` in prose, anchors and URLs of links, what commands print, other programs' flags (rsync,
seq ...), values beyond what the parsers above check, and python -m modules outside common/ (pytest, pip ...).
"""
from __future__ import annotations

import ast
import functools
import glob
import importlib
import re
import shlex
from pathlib import Path

import pytest
from conftest import load_stage

REPO = Path(__file__).resolve().parents[1]
SHELL_TAGS = {"bash", "sh", "shell", "console"}
COMMANDS = {"make", "python", "python3", ".venv/bin/python", "bash", "sh", "cd", "rsync", "cp", "mv", "mkdir",
            "pip", "git", "export", "cat", "ls", "srun", "sbatch", "ssh", "scp", "tar", "rm"}
PYTHONS = {"python", "python3", ".venv/bin/python", "$(PY)"}
HOLE = "__placeholder__"
OUTPUT_FLAGS = {"--out", "--results", "--tuned-dir"}
OUTPUT_VARS = {"RESULTS", "SMOKE_DIR", "TUNED_DIR"}
PATH_EXT = re.compile(r"\.(py|sh|json|md|png|txt|csv|toml|cfg|ya?ml|pt|log)$")
IGNORED = re.compile(r"^(results[^/]*(/|$)|data(/|$)|/|\.\./)")


def doc_files() -> list[Path]:
    return [p for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))] if p.is_file()]


def is_command_line(line: str) -> bool:
    words = [w for w in line.split() if not re.match(r"^[A-Za-z_]\w*=", w)]  # env prefixes
    return line.lstrip().startswith(("#", "$ ", "./")) or bool(words) and words[0] in COMMANDS


def shell_lines(text: str) -> list[tuple[int, str]]:
    """(line number, logical command line) for every command line of every shell block in markdown `text`."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, tag = m.groups()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        body = [(n, l[len(indent):] if l.startswith(indent) else l.lstrip())
                for n, l in enumerate(lines[i + 1:j], i + 2)]
        i = j + 1
        if tag.lower() not in SHELL_TAGS and not (tag == "" and all(is_command_line(l) for _, l in body if l.strip())):
            continue
        k = 0
        while k < len(body):
            start, line = body[k]
            if tag.lower() == "console" and not line.lstrip().startswith("$ "):
                k += 1
                continue
            while line.rstrip().endswith("\\") and k + 1 < len(body):
                k += 1
                line = line.rstrip()[:-1] + " " + body[k][1].strip()
            k += 1
            line = re.sub(r"^\s*\$ ", "", line)
            if line.strip() and not line.strip().startswith("#"):
                out.append((start, line))
    return out


def split_commands(line: str) -> list[list[str]]:
    """Words of each simple command on `line` (placeholders made single words, comments dropped)."""
    line = re.sub(r"(?<![^\s=])<[A-Za-z][^<>]*>(?=$|[\s;&|])", HOLE, line)
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
    lex.whitespace_split, lex.commenters = True, "#"
    commands, words, redirect = [], [], False
    for w in lex:
        if w in ("&&", "||", ";", "|", "&"):
            commands.append(words)
            words = []
        elif re.fullmatch(r"[<>&]+", w):  # a redirection: drop it, its file and a `2` before it
            words, redirect = words[:-1] if words[-1:] == ["2"] else words, True
        elif redirect:
            redirect = False
        else:
            words.append(w)
    return [c for c in commands + [words] if c]


def is_free(value: str) -> bool:
    return HOLE in value or "$" in value or value == "..."


@functools.lru_cache(maxsize=None)
def makefile() -> tuple[set[str], set[str]]:
    """(targets, variables) of the Makefile."""
    text = (REPO / "Makefile").read_text()
    targets, variables = set(), set(re.findall(r"\$[({]([A-Za-z_]\w*)[)}]", text))
    for line in text.splitlines():
        if line.startswith("\t") or line.lstrip().startswith("#"):
            continue
        if m := re.match(r"^\s*(?:override\s+|export\s+)*([A-Za-z_]\w*)\s*(?:\?=|::?=|\+=|=|$)", line):
            variables.add(m.group(1))
        if m := re.match(r"^([^\s:=#$][^:=]*?)\s*:(?!=)(.*)", line):
            names = m.group(1).split()
            targets.update(m.group(2).split() if names == [".PHONY"] else names)
    return targets, variables


def check_make(args: list[str]) -> list[str]:
    targets, variables = makefile()
    problems, i = [], 0
    while i < len(args):
        a = args[i]
        nxt = args[i + 1] if i + 1 < len(args) else ""
        if a in ("-C", "-f", "-o", "-W", "-I", "-l") or a == "-j" and (nxt.isdigit() or is_free(nxt) or nxt == "N"):
            i += 1  # the flag's argument
        elif re.match(r"^[A-Za-z_]\w*=", a):
            if (name := a.split("=", 1)[0]) not in variables:
                problems.append(f"make variable {name} is neither set nor used in the Makefile")
        elif not a.startswith("-") and not is_free(a) and a not in targets:
            problems.append(f"make target {a!r} is not in the Makefile")
        i += 1
    return problems


@functools.lru_cache(maxsize=None)
def stage(script: str):
    """(module, config class) of a stage script or common module: main()'s parse_config argument, evaluated."""
    if script.endswith(".py"):
        mod = load_stage(script)
    else:
        mod = importlib.import_module(script)
    source = Path(mod.__file__).read_text()
    mains = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    calls = [n for m in mains for n in ast.walk(m)
             if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "parse_config"]
    return (mod, eval(ast.get_source_segment(source, calls[0].args[0]), vars(mod))) if calls else (mod, None)


def check_stage(script: str, args: list[str]) -> list[str]:
    from common.config import parse_config
    from common.io import PipelineError

    if args[:1] in (["-h"], ["--help"]):
        return []
    mod, cls = stage(script)
    if cls is None:  # no parse_config in its main: treat it as any other script
        return check_script(Path(mod.__file__).relative_to(REPO).as_posix(), args)
    defaults = {f.name: str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
                for f in cls.__dataclass_fields__.values()}
    # `...` elides words, or stands for a value right after a flag
    argv = [a for k, a in enumerate(args)
            if a != "..." or k and args[k - 1].startswith("--") and "=" not in args[k - 1]]
    for i, a in enumerate(argv):  # placeholder values -> the field's default
        key = a[2:].partition("=")[0].replace("-", "_") if a.startswith("--") else None
        if "=" in a and key in defaults and is_free(a.partition("=")[2]):
            argv[i] = f"--{key}={defaults[key]}"
        elif key in defaults and i + 1 < len(argv) and is_free(argv[i + 1]):
            argv[i + 1] = defaults[key]
    try:
        cfg = parse_config(cls, argv)
        if hasattr(mod, "check_config") and hasattr(mod, "METHODS"):
            mod.check_config(cfg, mod.METHODS)
    except PipelineError as e:
        return [f"{script}: {e}"]
    return []


def check_script(script: str, args: list[str]) -> list[str]:
    """Any other python script: it exists; its --flags are named by its add_argument calls (if it has any)."""
    if not (REPO / script).is_file():
        return [f"script {script} does not exist"]
    tree = ast.parse((REPO / script).read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "add_argument"]
    known = {"-h", "--help"} | {a.value for c in calls for a in c.args if isinstance(a, ast.Constant)}
    flags = [a.split("=")[0] for a in args if a.startswith("--")]
    return [f"{script} has no option {f}" for f in flags if calls and f not in known]


def check_python(args: list[str]) -> list[str]:
    while args and args[0].startswith("-") and args[0] not in ("-m", "-c"):
        args = args[1:]  # interpreter flags (-u, -X ...)
    if not args or args[0] == "-c":
        return []
    if args[0] == "-m":
        name = args[1] if len(args) > 1 else ""
        if name.startswith("common."):
            if not (REPO / (name.replace(".", "/") + ".py")).is_file():
                return [f"module {name} does not exist"]
            return check_stage(name, args[2:])
        return []  # pytest, pip, venv ...
    script = args[0]
    if re.match(r"^\d\d_\w+\.py$", script):
        if not (REPO / script).is_file():
            return [f"stage script {script} does not exist"]
        return check_stage(script, args[1:])
    return check_script(script, args[1:]) if not is_free(script) and not IGNORED.match(script) else []


def check_paths(words: list[str]) -> list[str]:
    skip = set()
    prog = words[0]
    if prog in ("mkdir", "touch", "tee"):
        skip = set(range(len(words)))
    elif prog in ("cp", "mv", "rsync", "ln"):
        skip = {len(words) - 1}
    elif prog in PYTHONS:
        skip = {1}  # the script: check_python reports it
    problems = []
    for i, w in enumerate(words):
        if i in skip or (i > 0 and words[i - 1] in OUTPUT_FLAGS):
            continue
        name, eq, value = w.partition("=")
        if eq and (name in OUTPUT_VARS or name.lstrip("-") in ("out", "results", "tuned-dir")):
            continue
        p = value if eq else w
        if (is_free(p) or ":" in p or p.startswith("-") or IGNORED.match(p) or not re.fullmatch(r"[\w.*/-]+", p)
                or not ("/" in p or PATH_EXT.search(p)) or re.fullmatch(r"[\d.,/]+", p)):
            continue
        if not glob.glob(str(REPO / p)):
            problems.append(f"path {p} does not exist")
    return problems


def check_line(line: str) -> list[str]:
    problems = []
    for words in split_commands(line):
        while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
            words = words[1:]  # env prefix
        if not words:
            continue
        if words[0] == "make":
            problems += check_make(words[1:])
        elif words[0] in PYTHONS:
            problems += check_python(words[1:])
        problems += check_paths(words)
    return problems


DOC_LINES = [(p.relative_to(REPO).as_posix(), n, line) for p in doc_files() for n, line in shell_lines(p.read_text())]


@pytest.mark.parametrize("doc,lineno,line", DOC_LINES, ids=[f"{d}:{n}" for d, n, _ in DOC_LINES])
def test_doc_command(doc, lineno, line):
    problems = check_line(line)
    assert not problems, f"{doc}:{lineno}: {line.strip()}\n  " + "\n  ".join(problems)


def test_checker_catches_rot():
    text = "\n".join([
        "intro", "```bash",
        "make no-such-target PROFILE=cpu",                                      # 3
        "THREADS=1 python 04_unlearn_vit.py --no-such-flag 1 --results <tree>",  # 4
        "make all NO_SUCH_VAR=1 && python bench/no_such_bench.py --out x.json",  # 5
        "$ .venv/bin/python 07_report.py --results results \\", "    --seeds \"$(seq 0 7)\"  # --fake-in-comment",
        "python -m common.tune --action work --trials 3 --no-such-tune 1 | tee log.txt",  # 8
        "python tests/fake_data.py kaggle <out> --per-class 60 --bogus 2; ls docs/missing.png",  # 9
        "```", "```", "results/", "  seed-<s>/   one tree", "```",
        "```", "make -j 8 all PROFILE=paper DEVICE=cuda THREADS=4 SEEDS=\"$(seq 0 7)\" DATA_DIR=<folder with x>", "```",
        "```console", "$ make -n help > /tmp/out.txt", "make: output, not a command", "```",  # 19, 20
    ])
    lines = dict(shell_lines(text))
    assert sorted(lines) == [3, 4, 5, 6, 8, 9, 16, 19]  # no file tree, console output
    found = {n: "\n".join(check_line(l)) for n, l in lines.items()}
    assert "no-such-target" in found[3] and "PROFILE" not in found[3]
    assert "--no-such-flag" in found[4]
    assert "NO_SUCH_VAR" in found[5] and "bench/no_such_bench.py" in found[5] and "x.json" not in found[5]
    assert found[6] == "" and found[16] == found[19] == ""
    assert "--no-such-tune" in found[8] and "log.txt" not in found[8]
    assert "--bogus" in found[9] and "--per-class" not in found[9] and "docs/missing.png" in found[9]
    assert check_line("python 05_unlearn_gan.py --methods finetune,nope") != []  # check_config: unknown method
    assert check_line("make -j N all THREADS=t && python -m common.tune --storage ... --worker <k>") == []
    assert check_line("python -m common.audit_report --x 1") == []  # no parse_config in a main(): existence only
    assert "common.nope" in "".join(check_line("python -m common.nope"))


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def broken_links(page: Path, text: str) -> list[str]:
    """Relative link targets of `text` (a page at `page`) that do not exist; fenced code is skipped."""
    out = []
    for k, chunk in enumerate(re.split(r"^```.*$", text, flags=re.M)):
        if k % 2:
            continue  # inside a fenced block
        for target in LINK.findall(chunk):
            path = target.split("#", 1)[0]
            if path and not re.match(r"^[a-z]+:", path) and not (page.parent / path).exists():
                out.append(target)
    return out


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_doc_links_point_at_files_that_exist(doc):
    bad = broken_links(doc, doc.read_text())
    assert not bad, f"{doc.relative_to(REPO)} links to missing files: {bad}"


def test_link_checker_catches_a_missing_file(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("x")
    text = "[ok](there.md) [anchor](there.md#a) [web](https://example.org) [bad](gone.md) ![fig](nope.png)\n```\n[x](in-code.md)\n```\n"
    assert broken_links(page, text) == ["gone.md", "nope.png"]
