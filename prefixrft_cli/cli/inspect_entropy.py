"""Being written: replaced by the owning work item."""

HELP = "inspect_entropy"
EXAMPLE = ""


def command() -> None:
    raise SystemExit("inspect_entropy: not written yet")
