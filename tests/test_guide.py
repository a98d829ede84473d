"""docs/guide.md runs as written: every command and every Python block, in order, in one empty
folder, so the guide cannot drift from the code.

* In a ``console`` block, a line ``$ crossent ...`` is a command, run through ``crossent.cli.main``
  in this process (so the model is loaded once); it must exit with 0. The lines under it are
  what it prints: they must appear in its output, in that order (``...`` stands for lines left
  out).
* ``python`` blocks run one after the other in one namespace, as a reader would paste them.
* ``text`` blocks are outputs copied from a run; they are shown, not checked.

Loading the embedded model is the slow part, so ``load_model`` hands out the session's already
loaded SmolLM2 whenever it is asked for exactly that model in float32; any other model (the one
the guide trains) loads as usual.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

import crossent.models
from crossent.cli import main
from crossent.models import HFCausalLM

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)]+)\)")


@dataclass
class Step:
    """One command with the output lines the guide shows for it, or one Python block."""

    kind: str  # "command" or "python"
    source: str
    line: int
    expected: list[str] = field(default_factory=list)


def guide_steps(markdown: str) -> list[Step]:
    steps = []
    for match in _FENCE.finditer(markdown):
        language, body = match[1], match[2]
        line = markdown.count("\n", 0, match.start()) + 2
        if language == "python":
            steps.append(Step("python", body, line))
        elif language == "console":
            for offset, text in enumerate(body.splitlines()):
                if text.startswith("$ "):
                    steps.append(Step("command", text[2:], line + offset))
                else:
                    steps[-1].expected.append(text.rstrip())
    return steps


def _in_order(expected: list[str], output: str) -> str | None:
    """The first expected line not found in order among the output's lines, or None."""
    lines = iter(line.rstrip() for line in output.splitlines())
    for wanted in expected:
        if wanted == "...":
            continue
        if not any(line == wanted for line in lines):
            return wanted
    return None


def _run_command(step: Step) -> str:
    argv = shlex.split(step.source)
    assert argv[0] == "crossent", f"guide line {step.line}: not a crossent command"
    output = io.StringIO()
    code: int | str | None
    with contextlib.redirect_stdout(output):
        try:
            code = main(argv[1:])
        except SystemExit as exit:  # --help
            code = exit.code
    assert code == 0, f"guide line {step.line}: `{step.source}` exited with {code}"
    return output.getvalue()


@pytest.fixture
def embedded_model_once(smollm2: HFCausalLM, monkeypatch: pytest.MonkeyPatch) -> None:
    real = crossent.models.load_model

    def load_model(
        spec: str | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: str | None = None,
        progress: bool = False,
    ) -> crossent.models.CausalLM:
        if spec in (None, "smollm2-135m") and dtype == torch.float32 and device in (None, "cpu"):
            return smollm2
        return real(spec, dtype=dtype, device=device, progress=progress)

    monkeypatch.setattr(crossent.models, "load_model", load_model)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.slow
def test_guide_runs_as_written(
    embedded_model_once: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    steps = guide_steps(GUIDE.read_text(encoding="utf-8"))
    assert sum(step.kind == "command" for step in steps) >= 8
    assert sum(step.kind == "python" for step in steps) >= 4
    namespace: dict[str, object] = {"__name__": "guide"}
    for step in steps:
        if step.kind == "command":
            missing = _in_order(step.expected, _run_command(step))
            assert missing is None, (
                f"guide line {step.line}: `{step.source}` did not print {missing!r}"
            )
        else:
            code = compile(step.source, f"{GUIDE.name}, block at line {step.line}", "exec")
            with contextlib.redirect_stdout(io.StringIO()):
                exec(code, namespace)

    # The pictures the guide's commands drew are the ones committed beside it.
    drawn = sorted(path.relative_to(tmp_path) for path in (tmp_path / "docs").rglob("*.png"))
    committed = sorted(path.relative_to(ROOT) for path in (ROOT / "docs").rglob("*.png"))
    assert drawn == committed
    for path in drawn:
        assert _png_size(tmp_path / path) == _png_size(ROOT / path), path


def test_guide_images_exist() -> None:
    images = _IMAGE.findall(GUIDE.read_text(encoding="utf-8"))
    assert images
    for image in images:
        assert (GUIDE.parent / image).is_file(), image


def test_guide_parser_finds_output_and_misses() -> None:
    markdown = "```console\n$ crossent a\nx\n...\ny\n$ crossent b\n```\n```python\n1\n```\n"
    first, second, block = guide_steps(markdown)
    assert (first.source, first.expected, first.line) == ("crossent a", ["x", "...", "y"], 2)
    assert (second.expected, block.kind, block.source) == ([], "python", "1\n")
    assert _in_order(["x", "...", "y"], "x\nz\ny\n") is None
    assert _in_order(["y", "x"], "x\ny\n") == "x"  # out of order
