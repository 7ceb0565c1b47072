"""Loading a policy: any hub id or local folder through `from_pretrained`, or "toy".

"toy" is the tiny Llama shipped in `assets/toy-base/` (built by `python -m
prefixrft_cli.toy_base`); it is an ordinary model folder, so everything that works on
it works on a real model. Nothing here downloads unless a hub id is given and the
network allows it. Test: tests/test_models.py.
"""

from __future__ import annotations

from pathlib import Path

from prefixrft_cli.errors import UserError

ASSETS = Path(__file__).resolve().parent / "assets"
TOY_BASE = ASSETS / "toy-base"
DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_model_path(name_or_path: str) -> str:
    """'toy' -> the bundled base folder; a path that looks local must exist; else a hub id."""
    if name_or_path == "toy":
        return str(TOY_BASE)
    looks_local = name_or_path.startswith((".", "/", "~")) or Path(name_or_path).exists() \
        or name_or_path.count("/") > 1
    path = Path(name_or_path).expanduser()
    if looks_local and not path.is_dir():
        raise UserError(f"--model {name_or_path}: no such model folder")
    return str(path) if looks_local else name_or_path


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False):
    """The model's tokenizer, padding on the left, with a pad token (eos when it has none)."""
    from transformers import AutoTokenizer

    source = resolve_model_path(name_or_path)
    check_model_folder(name_or_path, source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except Exception as err:  # missing or unreadable tokenizer files: one line naming the model
        raise UserError(f"--model {name_or_path}: cannot load its tokenizer ({_first_line(err)})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model")


def check_model_folder(name_or_path: str, source: str) -> None:
    """A local model folder needs a readable config.json and tokenizer files; say which is wrong in one line."""
    folder = Path(source)
    if not folder.is_dir():
        return  # a hub id: from_pretrained reports its own problems
    from prefixrft_cli.jsonio import read_json

    config = folder / "config.json"
    if not config.is_file():
        raise UserError(f"--model {name_or_path}: the folder has no config.json (not a from_pretrained folder)")
    if not isinstance(read_json(config), dict):
        raise UserError(f"{config}: expected a JSON object")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"--model {name_or_path}: the folder has no tokenizer files (one of "
                        f"{', '.join(TOKENIZER_FILES)}); save the tokenizer next to the model")


def load_policy(name_or_path: str, dtype: str = "float32", trust_remote_code: bool = False):
    """(model, tokenizer) from a hub id, a local folder or 'toy'; the model is in train mode on CPU."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own views show progress; keep stderr for errors

    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; valid: {', '.join(DTYPES)}")
    dtype = concrete_dtype(dtype)
    tokenizer = load_tokenizer(name_or_path, trust_remote_code)
    source = resolve_model_path(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype),
                                                     trust_remote_code=trust_remote_code)
    except Exception as err:  # a truncated weights file, a config transformers cannot map: one line, not a traceback
        raise UserError(f"--model {name_or_path}: cannot load the model ({type(err).__name__}: "
                        f"{_first_line(err)})") from None
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def concrete_dtype(dtype: str) -> str:
    """model.dtype with auto made concrete for a plain cast (eval, inspection): bfloat16 on CUDA, else float32.

    Training keeps float32 weights and computes in this dtype (train/precision.py).
    """
    import torch

    if dtype != "auto":
        return dtype
    return "bfloat16" if torch.cuda.is_available() else "float32"


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
