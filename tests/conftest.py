"""Shared test set-up: one torch thread, the --runslow flag, and ../shared/data when it is present."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# The toy model is tiny: on 2 shared cores, one torch thread is faster and far steadier than two.
torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real benchmark files); tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def cli_exit_code(argv: list[str]) -> int:
    """Call the CLI in-process and return its exit code (output goes where it goes)."""
    from prefixrft_cli.cli.app import main

    try:
        main(argv)
    except SystemExit as stop:
        return stop.code or 0
    return 0


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture):
    """Call the CLI in-process: run_cli(argv) -> (exit code, stdout, stderr)."""
    from prefixrft_cli.cli.app import main

    def run(argv: list[str]) -> tuple[int, str, str]:
        try:
            main(argv)
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
