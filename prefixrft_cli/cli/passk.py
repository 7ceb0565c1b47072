"""Being written: replaced by the owning work item."""

HELP = "passk"
EXAMPLE = ""


def command() -> None:
    raise SystemExit("passk: not written yet")
