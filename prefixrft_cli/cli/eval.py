"""Being written: replaced by the owning work item."""

HELP = "eval"
EXAMPLE = ""


def command() -> None:
    raise SystemExit("eval: not written yet")
