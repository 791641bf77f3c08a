"""The shared entry helper: exit codes and the one-line error of every command."""

from __future__ import annotations

import os
import signal

import pytest

from pipeline.entry import exit_code, handle_sigterm, native_stderr_held
from pipeline.errors import ConfigError, Terminated


def test_work_that_returns_nothing_exits_zero_and_an_int_is_passed_through() -> None:
    assert exit_code(lambda: None) == 0
    assert exit_code(lambda: 1) == 1


def test_expected_fault_is_one_line_on_stderr_and_exit_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def work() -> None:
        raise ConfigError("train.epochs must be >= 1, got 0")

    assert exit_code(work) == 1
    assert capsys.readouterr().err == "error: train.epochs must be >= 1, got 0\n"


@pytest.mark.parametrize(
    ("interrupt", "code", "name"),
    [(KeyboardInterrupt(), 130, "Ctrl-C"), (Terminated(), 143, "SIGTERM")],
)
def test_interrupts_exit_130_or_143_and_say_which(
    interrupt: KeyboardInterrupt, code: int, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def work() -> None:
        raise interrupt

    assert exit_code(work) == code
    assert capsys.readouterr().err == f"error: interrupted by {name}\n"


def test_sigterm_raises_terminated_once_handled() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        handle_sigterm()
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_native_stderr_is_held_and_shown_only_if_the_block_fails(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with native_stderr_held():
        os.write(2, b"I0000 start-up noise\n")  # as a C++ library writes: to the descriptor
    assert capfd.readouterr().err == ""
    with pytest.raises(ImportError), native_stderr_held():
        os.write(2, b"why the load failed\n")
        raise ImportError("no backend")
    assert capfd.readouterr().err == "why the load failed\n"
