"""Being written."""

HELP = "train"
EXAMPLE = ""


def command() -> None:
    raise SystemExit("train: not written yet")
