"""What stops a command (`serve`, `check-config`, `capture`) is reported in one place, `cli.process.report_failure`:
one line per problem on stderr under the command's name, and the exit code; never a traceback for an error the
operator can act on, always one for a bug."""

from __future__ import annotations

import pytest

from tempo_lite.block.meta import BlockConflict
from tempo_lite.cli.process import report_failure
from tempo_lite.errors import ConfigError, StorageError


def _grouped(exc: BaseException) -> BaseExceptionGroup:
    """As trio raises a task's error out of nested nurseries."""
    return BaseExceptionGroup("outer", [BaseExceptionGroup("inner", [exc])])


@pytest.mark.parametrize("prog", ["tempo-lite", "tempo-lite capture"])
def test_a_configuration_error_prints_one_line_per_problem_naming_file_and_line_and_exits_2(
    prog: str, capsys: pytest.CaptureFixture[str],
) -> None:
    error = ConfigError("tempo.yaml:2: unknown configuration key 'server.x'\ntempo.yaml:5: invalid value for 'y'")
    assert report_failure(_grouped(error), prog) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{prog}: configuration error: tempo.yaml:2: unknown configuration key 'server.x'",
        f"{prog}: configuration error: tempo.yaml:5: invalid value for 'y'",
    ]


def test_a_storage_error_is_one_line_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert report_failure(_grouped(StorageError("s3 bucket 'b': access denied"))) == 1
    assert capsys.readouterr().err == "tempo-lite: storage error: s3 bucket 'b': access denied\n"


def test_another_tempo_lite_error_is_its_message_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert report_failure(BlockConflict("block 1234 exists with other contents"), "tempo-lite capture") == 1
    assert capsys.readouterr().err == "tempo-lite capture: block 1234 exists with other contents\n"


def test_an_os_error_such_as_a_port_in_use_is_one_line_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert report_failure(_grouped(OSError(98, "Address already in use"))) == 1
    assert capsys.readouterr().err == "tempo-lite: [Errno 98] Address already in use\n"


def test_a_missing_module_says_how_to_reinstall_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert report_failure(_grouped(ModuleNotFoundError("No module named 'pyarrow'"))) == 2
    assert capsys.readouterr().err == (
        "tempo-lite: cannot start: No module named 'pyarrow' (reinstall tempo-lite: pip install -e .)\n")


def test_ctrl_c_exits_130_without_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert report_failure(_grouped(KeyboardInterrupt())) == 130
    assert capsys.readouterr().err == ""


def test_a_bug_is_raised_again_with_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    bug = _grouped(ZeroDivisionError("division by zero"))
    with pytest.raises(BaseExceptionGroup) as info:
        report_failure(bug)
    assert info.value is bug
    assert capsys.readouterr().err == ""
