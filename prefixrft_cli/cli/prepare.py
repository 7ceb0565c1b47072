"""Being written: replaced by the owning work item."""

HELP = "prepare"
EXAMPLE = ""


def command() -> None:
    raise SystemExit("prepare: not written yet")
