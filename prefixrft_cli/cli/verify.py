"""Being written: replaced by the owning work item."""

HELP = "verify"
EXAMPLE = ""


def command() -> None:
    raise SystemExit("verify: not written yet")
