"""The documentation runs: every Python block of README.md and docs/*.md is
executed, and what the docs say about kvstore-server and pip holds (issue 8).

Conventions for the docs (keep them few):

- A fenced block tagged ``python`` is code, run top to bottom. All blocks of
  one file share one namespace, in file order, so a later block may use
  names an earlier one made (``app`` in the Celery sections).
- A block that is deliberately not runnable says so on the line right before
  its fence: ``<!-- docs-test: no-run (why) -->``. Use it sparingly; a
  reader copies these blocks.
- A comment that begins with a Python literal, on an expression statement,
  states that expression's result: ``kv.get("missing", 0)  # 0`` is checked
  (same type, equal; a float within 5%, since figures such as a ttl are an
  example of the kind). ``# swap only if ...`` states nothing and is not.
- The snippets talk to ``127.0.0.1:16380``, the default address. The test
  rewrites that text to the session server's free port (tests/conftest.py's
  ``server`` fixture) before running them.
- A snippet fails the test when it raises or warns: every warning is an
  error while the blocks run, and the file's namespace is dropped and
  collected afterwards with warnings recorded, so an object the docs leave
  open (a pool, a client) shows up as a ResourceWarning.
"""

from __future__ import annotations

import ast
import gc
import importlib.util
import math
import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import kvstore
from tests.procs import SERVER_COMMAND

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOC_ADDRESS = "127.0.0.1:16380"
NO_RUN = re.compile(r"<!--\s*docs-test:\s*no-run\b.*-->")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")


class Block(NamedTuple):
    info: str    # the fence's info string: "python", "sh", "" ...
    line: int    # 1-based line of the first code line in the file
    code: str
    run: bool    # False when marked no-run


def blocks(text: str) -> list[Block]:
    """The fenced code blocks of a markdown text, in order."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, info = opening.group(2), opening.group(3).lower()
        marked = i > 0 and bool(NO_RUN.search(lines[i - 1]))
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        found.append(Block(info, i + 2, "\n".join(lines[i + 1:end]) + "\n", not marked))
        i = end + 1
    return found


def python_blocks(path: Path) -> list[Block]:
    return [b for b in blocks(path.read_text(encoding="utf-8")) if b.info == "python"]


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# -- result claims: `expression  # literal` --------------------------------------------------

def comments(code: str) -> dict[int, str]:
    """Comment text by (block-relative) line number."""
    import io
    import tokenize

    found = {}
    for token in tokenize.generate_tokens(io.StringIO(code).readline):
        if token.type == tokenize.COMMENT:
            found[token.start[0]] = token.string.lstrip("#").strip()
    return found


_NOT_A_CLAIM = object()


def claim(comment: str) -> Any:
    """The literal a comment starts with (the longest such prefix), or _NOT_A_CLAIM."""
    words = comment.split(" ")
    for n in range(len(words), 0, -1):
        try:
            return ast.literal_eval(" ".join(words[:n]))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return _NOT_A_CLAIM


def same(value: Any, claimed: Any) -> bool:
    if isinstance(claimed, float):
        return type(value) is float and math.isclose(value, claimed, rel_tol=0.05)
    if type(value) is not type(claimed):
        return False
    if isinstance(claimed, list):
        return len(value) == len(claimed) and all(map(same, value, claimed))
    if isinstance(claimed, dict):
        return (list(value) == list(claimed)
                and all(same(value[k], claimed[k]) for k in claimed))
    return value == claimed


class _Claims(ast.NodeTransformer):
    """Wraps each claimed expression statement as ``__doc_claim__(expr, line)``."""

    def __init__(self, candidates: dict[int, Any]) -> None:
        self.candidates = candidates
        self.claims: dict[int, Any] = {}

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        if node.end_lineno in self.candidates:
            self.claims[node.end_lineno] = self.candidates[node.end_lineno]
            call = ast.Call(ast.Name("__doc_claim__", ast.Load()),
                            [node.value, ast.Constant(node.end_lineno)], [])
            return ast.copy_location(ast.Expr(ast.copy_location(call, node.value)), node)
        return node


def compile_block(path: Path, block: Block) -> tuple[Any, dict[int, Any]]:
    """The block compiled with the markdown file's own line numbers, and its claims."""
    source = "\n" * (block.line - 1) + block.code
    tree = ast.parse(source, filename=str(path))
    candidates = {}
    for line, text in comments(source).items():
        value = claim(text)
        if value is not _NOT_A_CLAIM:
            candidates[line] = value
    # only a comment on an expression statement states a result
    transformer = _Claims(candidates)
    tree = ast.fix_missing_locations(transformer.visit(tree))
    return compile(tree, str(path), "exec"), transformer.claims


def never_called(runnable: list[Block]) -> list[str]:
    """Functions a file's blocks define at top level and never use: an
    ``async def main()`` nobody runs would otherwise pass without running."""
    defined, used = [], set()
    for block in runnable:
        tree = ast.parse(block.code)
        defined += [node.name for node in tree.body
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
        used |= {node.id for node in ast.walk(tree)
                 if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return [name for name in defined if name not in used]


# -- the tests ---------------------------------------------------------------------------------

RUNNABLE = [p for p in DOCS if any(b.run for b in python_blocks(p))]


def test_the_docs_have_python_blocks_to_run():
    assert ROOT / "README.md" in RUNNABLE


@pytest.mark.server
@pytest.mark.parametrize("path", RUNNABLE, ids=relative)
def test_python_blocks_run(path: Path, server) -> None:
    runnable = [b for b in python_blocks(path) if b.run]
    if any("celery" in b.code.lower() for b in runnable) and importlib.util.find_spec("celery") is None:
        pytest.skip("the Celery blocks need the celery extra")
    uncalled = never_called(runnable)
    assert not uncalled, f"{relative(path)} defines {uncalled} and never calls it"
    claims: dict[int, Any] = {}   # file line -> the result its comment states
    checked: set[int] = set()

    def check_claim(value: Any, line: int) -> Any:
        claimed = claims[line]
        assert same(value, claimed), (
            f"{relative(path)}:{line}: the docs say {claimed!r}, the code gives {value!r}")
        checked.add(line)
        return value

    with warnings.catch_warnings():
        # garbage of earlier tests is theirs, not this file's
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    namespace: dict[str, Any] = {"__name__": "__docs__", "__doc_claim__": check_claim}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for block in runnable:
                if DOC_ADDRESS in block.code:
                    block = block._replace(code=block.code.replace(DOC_ADDRESS, server.address))
                code, block_claims = compile_block(path, block)
                claims.update(block_claims)
                exec(code, namespace)
    except BaseException:
        namespace.clear()
        raise
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        namespace.clear()
        gc.collect()
    assert not [str(w.message) for w in leaked], f"{relative(path)} leaves something open"
    assert checked == set(claims), f"{relative(path)}: results never reached: {set(claims) - checked}"


def test_readme_results_are_checked():
    """The claim machinery sees README's Engine results (a guard against a
    parser change that would silently check nothing)."""
    engine_block = python_blocks(ROOT / "README.md")[0]
    _, claims = compile_block(ROOT / "README.md", engine_block)
    assert {type(v) for v in claims.values()} >= {dict, int, bool, list, float, str}


def test_no_run_marker_and_line_numbers():
    text = ("intro\n"
            "```python\nx = 1\n```\n"
            "<!-- docs-test: no-run (needs a broker) -->\n"
            "```python\nraise SystemExit\n```\n"
            "```sh\nls\n```\n")
    found = blocks(text)
    assert [(b.info, b.line, b.code, b.run) for b in found] == [
        ("python", 3, "x = 1\n", True),
        ("python", 7, "raise SystemExit\n", False),
        ("sh", 10, "ls\n", True),
    ]


def test_a_failing_claim_fails():
    block = Block("python", 5, "import kvstore\nkvstore.Engine().get('x', 0)  # 1\n", True)
    code, claims = compile_block(ROOT / "README.md", block)
    assert claims == {6: 1}
    seen = []
    exec(code, {"__doc_claim__": lambda value, line: seen.append((value, line))})
    assert seen == [(0, 6)] and not same(0, 1) and not same(1, True)


@pytest.mark.server
def test_protocol_info_example_has_the_real_info_fields(server) -> None:
    """docs/protocol.md shows "a real answer" of INFO: its fields are the
    fields a server answers today."""
    shown = None
    for block in python_blocks(ROOT / "docs" / "protocol.md"):
        tree = ast.parse(block.code)
        if (len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr)
                and isinstance(tree.body[0].value, ast.Dict)):
            shown = ast.literal_eval(tree.body[0].value)
    assert shown is not None and "uptime_s" in shown
    with kvstore.Client.connect(server.address) as kv:
        real = kv.info()
    assert sorted(shown) == sorted(real)


# -- what the docs say outside Python blocks ---------------------------------------------------

# Bare flags in inline code (`--max-payload`) are kvstore-server's in these
# files, outside their benchmark sections; the other docs (benchmarks) use
# them for asv and benchmarks.compare.
SERVER_FLAG_DOCS = {"README.md", "docs/protocol.md", "docs/celery.md"}
NOT_SERVER_SECTION = re.compile(r"#+ .*benchmark", re.IGNORECASE)
FLAG = re.compile(r"--[a-z][a-z0-9-]*")
INLINE_FLAG = re.compile(r"`(--[a-z][a-z0-9-]*)[^`]*`")


def documented_server_flags() -> dict[str, list[str]]:
    """Each flag the docs give kvstore-server -> where ("file:line")."""
    found: dict[str, list[str]] = {}
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        in_code = False
        server_section = True
        for number, line in enumerate(lines, 1):
            if FENCE.match(line):
                in_code = not in_code
            elif not in_code and line.startswith("#"):
                server_section = not NOT_SERVER_SECTION.match(line)
            flags = []
            if "kvstore-server" in line:
                # the flags after the command, its trailing comment included
                after = line.split("kvstore-server", 1)[1]
                flags += FLAG.findall(after) if in_code else [
                    f for span in re.findall(r"`kvstore-server([^`]*)`", line)
                    for f in FLAG.findall(span)]
            if not in_code and server_section and relative(path) in SERVER_FLAG_DOCS:
                flags += INLINE_FLAG.findall(line)
            for flag in flags:
                found.setdefault(flag, []).append(f"{relative(path)}:{number}")
    return found


def server_help() -> str:
    done = subprocess.run([*SERVER_COMMAND, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_documented_server_flag_exists():
    documented = documented_server_flags()
    # what the docs certainly mention; an empty scan would prove nothing
    assert {"--bind", "--max-payload", "--idle-timeout", "--log-level"} <= set(documented)
    known = set(FLAG.findall(server_help()))
    unknown = {flag: where for flag, where in documented.items() if flag not in known}
    assert not unknown, f"kvstore-server has no such option: {unknown}"


WRONG_PIP = re.compile(r"""pip install\s+(?:-\S+\s+)*["']?kvstore(?![\w-])""")


def test_docs_install_the_kvstore_engine_distribution():
    """The package index's `kvstore` is an unrelated project: the docs must
    say `pip install "kvstore-engine[...]"` (a checkout's '.[...]' is fine)."""
    wrong = [f"{relative(path)}:{n}: {line.strip()}"
             for path in DOCS
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if WRONG_PIP.search(line)]
    assert not wrong, wrong
    for bad in ['pip install kvstore[celery]', 'pip install "kvstore[celery]"',
                "pip install 'kvstore'", "pip install -U kvstore"]:
        assert WRONG_PIP.search(bad), bad
    for good in ['pip install "kvstore-engine[celery]"', "pip install '.[celery]'",
                 "pip install kvstore-engine"]:
        assert not WRONG_PIP.search(good), good
