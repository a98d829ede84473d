"""SIGTERM and Ctrl-C during ``crossent eval`` and ``crossent compare``: exit 143 or 130, and
every output either whole or absent, with no temporary file left (issue 15). A real process, a
real signal.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crossent.failures import (
    Terminated,
    defer_interrupts_in_import,
    exit_code_of,
    interrupts_deferred,
    signal_received,
    terminate_as_interrupt,
)

SIGNALS = [(signal.SIGTERM, 143), (signal.SIGINT, 130)]


def _interrupt(command: list[str], outputs: Path, sent: signal.Signals, code: int) -> None:
    """Run ``crossent COMMAND``, send ``sent`` while it scores, and check what it left."""
    (outputs / "earlier.json").write_text('{"kept": true}')  # a user's file beside the outputs
    process = subprocess.Popen(
        [sys.executable, "-m", "crossent", *command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        # a background job ignores SIGINT, and a child inherits that: let this one take it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        time.sleep(8)  # loading or scoring: the default text takes minutes to score
        assert process.poll() is None
        process.send_signal(sent)
        _, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "crossent: interrupted"
    assert sorted(path.name for path in outputs.iterdir()) == ["earlier.json"]
    assert (outputs / "earlier.json").read_text() == '{"kept": true}'


@pytest.mark.parametrize(("sent", "code"), SIGNALS)
def test_a_signal_during_eval_leaves_no_output_and_no_temporary(
    tmp_path: Path, sent: signal.Signals, code: int
) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    command = [
        "eval", "--json", str(outputs / "eval.json"), "--per-token",
        str(outputs / "tokens.jsonl"), "--report", str(outputs / "report.html"),
    ]  # fmt: skip
    _interrupt(command, outputs, sent, code)


@pytest.mark.parametrize(("sent", "code"), SIGNALS)
def test_a_signal_during_compare_leaves_no_output_and_no_temporary(
    tmp_path: Path, sent: signal.Signals, code: int
) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    command = [
        "compare", "--model", "smollm2-135m", "--model", "smollm2-135m", "--json",
        str(outputs / "compare.json"), "--report", str(outputs / "compare.html"),
    ]  # fmt: skip
    _interrupt(command, outputs, sent, code)


@pytest.mark.parametrize(("sent", "kind"), [(signal.SIGINT, "KeyboardInterrupt"),
                                            (signal.SIGTERM, "Terminated")])  # fmt: skip
def test_a_signal_that_code_swallowed_is_still_known(sent: signal.Signals, kind: str) -> None:
    # What NumPy's and PyTorch's import guards do to a Ctrl-C that lands in them.
    with terminate_as_interrupt():
        try:
            os.kill(os.getpid(), sent)
            time.sleep(5)  # the handler raises here, at once
        except BaseException:  # the swallowing is the point
            pass
    interrupt = signal_received()
    assert interrupt is not None
    assert type(interrupt).__name__ == kind
    assert exit_code_of(interrupt) == 128 + sent
    with terminate_as_interrupt():  # a new block forgets the last one's signal
        pass
    assert signal_received() is None


def _signals_in_a_deferred_block(sent: signal.Signals, steps: list[str]) -> None:
    """``sent`` and then a SIGINT inside an :func:`interrupts_deferred` block; ``steps`` says
    how far the block got."""
    with terminate_as_interrupt():
        with interrupts_deferred():
            os.kill(os.getpid(), sent)
            time.sleep(0.2)  # an undeferred handler would raise here
            os.kill(os.getpid(), signal.SIGINT)  # a second signal: the first one counts
            time.sleep(0.2)
            steps.append("block finished")
        steps.append("after the block")


def _a_signal_after_a_deferred_block() -> None:
    with terminate_as_interrupt():
        with interrupts_deferred():
            pass
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the handler raises here, at once


@pytest.mark.parametrize(
    ("sent", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)]
)
def test_a_signal_inside_a_deferred_block_is_raised_when_it_ends(
    sent: signal.Signals, raised: type[KeyboardInterrupt]
) -> None:
    # What keeps a Ctrl-C out of the Python code PyTorch's C++ calls during its import.
    steps: list[str] = []
    with pytest.raises(raised) as caught:
        _signals_in_a_deferred_block(sent, steps)
    assert steps == ["block finished"]
    assert type(caught.value) is raised
    assert exit_code_of(caught.value) == 128 + sent
    with pytest.raises(KeyboardInterrupt):  # after the block the handler raises again
        _a_signal_after_a_deferred_block()


def _import_with_interrupts_deferred(name: str) -> None:
    with terminate_as_interrupt():
        defer_interrupts_in_import(name)
        importlib.import_module(name)


def test_the_first_import_of_a_package_holds_its_signal_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The command line's guard around PyTorch's import, on a module that interrupts itself.
    (tmp_path / "interrupting_module.py").write_text(
        "import os, pathlib, signal, time\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(0.2)  # an undeferred handler would raise here\n"
        "pathlib.Path(__file__).with_name('finished').write_text('yes')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "interrupting_module", raising=False)
    with pytest.raises(KeyboardInterrupt):
        _import_with_interrupts_deferred("interrupting_module")
    assert (tmp_path / "finished").read_text() == "yes"  # the module ran to its end
    assert not any(type(finder).__name__ == "_DeferringFinder" for finder in sys.meta_path)
