"""The `prefixrft` command: one thin file per subcommand, errors as one line with exit code 2.

A `UserError` (bad input, named where it entered) and, as a last net, an `OSError` that
names a file (a disk that filled up, a permission) become one line on stderr and exit 2.
"""

from __future__ import annotations

import sys

import typer

from prefixrft_cli.cli import eval as eval_cmd
from prefixrft_cli.cli import configs, inspect_entropy, passk, plugins, prepare, train, verify
from prefixrft_cli.errors import UserError
from prefixrft_cli.interrupts import StopRequests, Stopped

app = typer.Typer(
    name="prefixrft",
    help="Prefix-RFT: reinforcement fine-tuning from demonstration prefixes and exploration.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

for module, name in ((prepare, "prepare"), (train, "train"), (eval_cmd, "eval"), (passk, "passk"),
                     (inspect_entropy, "inspect-entropy"), (verify, "verify"), (plugins, "plugins"),
                     (configs, "configs")):
    app.command(name, help=module.HELP, epilog=module.EXAMPLE)(module.command)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"prefixrft {version('prefixrft')}")
        except PackageNotFoundError:
            typer.echo("prefixrft (not installed as a distribution)")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                          help="Print the version and exit.")) -> None:
    """Prefix-RFT: reinforcement fine-tuning from demonstration prefixes and exploration."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script; a UserError becomes one line on stderr and exit code 2,
    a stop on a signal one line and exit code 128 + signal (130 SIGINT, 143 SIGTERM)."""
    argv = sys.argv[1:] if argv is None else argv
    # the deepspeed launcher adds --local_rank=N before the command; LOCAL_RANK in the environment says the same
    argv = [arg for arg in argv if not arg.startswith(("--local_rank=", "--local-rank="))]
    try:
        with StopRequests(deferring=False):
            app(args=argv, prog_name="prefixrft")
    except UserError as err:
        sys.stderr.write(f"prefixrft: error: {err}\n")
        raise SystemExit(2) from None
    except Stopped as stop:
        sys.stderr.write(f"prefixrft: {stop.message}\n")
        raise SystemExit(stop.exit_code) from None
    except OSError as err:  # a path the checks above did not foresee (disk full, permissions): still one line
        if err.filename is None:
            raise
        sys.stderr.write(f"prefixrft: error: {err.filename}: {err.strerror or err}\n")
        raise SystemExit(2) from None
