"""Will a model fit? The memory a model needs (weights, KV cache, overhead) against free RAM and,
with a GPU backend, the free VRAM nvidia-smi reports.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.base.units import human_bytes
from app.core.models.files import ModelError
from app.core.models.gguf import cached_gguf_info

if TYPE_CHECKING:
    from app.core.models.gguf import GGUFInfo

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 4096  # what the engine loads with when neither the user nor the model says
DEFAULT_BATCH = 512  # llama.cpp's n_batch, as LoadSettings.batch_size


OVERSIZE_HINT = ("To try anyway: --allow-oversize on the command line, or “Load anyway” in "
                 "the window (the system may swap or stop Folio).")


class WontFitError(ModelError):
    """The memory estimate says the model will not fit; loading it anyway is the user's call
    (LoadSettings.allow_oversize, the CLI's --allow-oversize, the window's "Load anyway")."""


@dataclass
class MemoryEstimate:
    """What loading a model should take. See `ModelManager.estimate_memory` for the formula."""

    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int
    total_bytes: int
    free_ram_bytes: int
    free_vram_bytes: int | None  # None: no GPU backend, or it cannot be measured
    fits: bool  # False: it will not fit (the runtime refuses it); see vram_unknown
    device: str  # "cpu" | "gpu"
    reason: str
    context_length: int = 0
    vram_bytes: int = 0  # the offloaded share (weights of the offloaded layers + their KV)
    gpu_layers: int = 0  # layers offloaded, of block_count + 1 (the output layer)
    vram_unknown: bool = False  # layers are offloaded but free VRAM could not be read: only
    # the RAM part was judged, so `fits` does not vouch for the VRAM part

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _gpu_offload_supported() -> bool:
    global _GPU_SUPPORT
    if _GPU_SUPPORT is None:
        try:
            import llama_cpp

            _GPU_SUPPORT = bool(llama_cpp.llama_supports_gpu_offload())
        except Exception:  # noqa: BLE001 - no llama.cpp: nothing can be offloaded
            _GPU_SUPPORT = False
    return _GPU_SUPPORT


_GPU_SUPPORT: bool | None = None
_VRAM_TTL = 5.0  # seconds a free-VRAM reading is reused (the editor asks on every keystroke)
_VRAM_TIMEOUT = 2.0  # seconds nvidia-smi may take before the reading counts as unknown
_vram_cache: tuple[float, int | None] | None = None
_vram_lock = threading.Lock()


def _free_vram(read: bool = True) -> int | None:
    """Free VRAM in bytes, best effort: what `nvidia-smi` reports (summed over the GPUs it
    lists: llama.cpp splits the layers across all of them by default), None when there is no
    nvidia-smi, it fails, or it takes longer than a couple of seconds. Local only: nvidia-smi
    talks to the driver, never to the network. Remembered for a few seconds. `read=False`:
    the last reading however old, never running nvidia-smi (for the GUI thread: the reading
    can take up to `_VRAM_TIMEOUT`)."""
    global _vram_cache
    with _vram_lock:
        now = time.monotonic()
        if _vram_cache is not None and (not read or now - _vram_cache[0] < _VRAM_TTL):
            return _vram_cache[1]
        if not read:
            return None
        value = _read_nvidia_smi()
        _vram_cache = (now, value)
        return value


def _read_nvidia_smi() -> int | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=_VRAM_TIMEOUT, check=False,
            stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:  # TimeoutExpired included
        log.info("nvidia-smi gave no free VRAM figure: %s", exc)
        return None
    if done.returncode != 0:
        log.info("nvidia-smi failed (%s): %s", done.returncode, done.stderr.strip()[:200])
        return None
    return parse_nvidia_smi_free(done.stdout)


def parse_nvidia_smi_free(text: str) -> int | None:
    """`nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits` prints one number
    of MiB per GPU; their sum in bytes, or None when a line is not a number ("[N/A]")."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or not all(line.isdigit() for line in lines):
        return None
    return sum(int(line) for line in lines) * 1024 * 1024


def _unified_memory() -> bool:
    """Apple silicon's GPU (Metal) uses the same memory as the CPU: offloading moves nothing
    out of RAM."""
    return sys.platform == "darwin"
def available_ram() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001
        return 0


def estimate_memory(
    info: GGUFInfo, context_length: int, gpu_layers: int | None = None, batch_size: int = 512,
    *, swa_full: bool = True, read_vram: bool = True,
) -> MemoryEstimate:
    """The formula of ModelManager.estimate_memory for a header and a context length."""
    ctx = max(1, int(context_length))
    batch = max(1, min(int(batch_size), ctx))
    weights = info.file_size
    layers = info.block_count or 0
    per_cell = 2 * (info.head_count_kv or 0) * ((info.key_length or 0) + (info.value_length or 0))
    swa = 0 if swa_full else info.swa_layers()
    swa_cells = min(ctx, (info.sliding_window or 0) + batch)
    kv = per_cell * ((layers - swa) * ctx + swa * swa_cells)
    vocab = info.vocab_size or 32_000
    overhead = 128 * 1024 * 1024 + 64 * vocab + 64 * batch * (info.embedding_length or 0)
    total = weights + kv + overhead
    free_ram = available_ram()
    total_layers = layers + 1  # the repeating blocks and the output layer
    on_gpu = 0
    if _gpu_offload_supported() and gpu_layers != 0:
        on_gpu = total_layers if gpu_layers is None or gpu_layers < 0 else min(gpu_layers,
                                                                              total_layers)
    parts = (f"weights {human_bytes(weights)}, context {ctx:,} tokens {human_bytes(kv)}")
    free_vram: int | None = None
    in_vram = 0
    vram_unknown = False
    if on_gpu and not _unified_memory():
        # The offloaded layers' weights and their KV cache go to VRAM; the token embeddings,
        # the rest of the layers and the compute overhead stay in RAM (counting all of the
        # overhead there errs on the safe side for RAM).
        kv_share = min(on_gpu, layers) / layers if layers else 1.0
        in_vram = int(weights * on_gpu / total_layers + kv * kv_share)
        in_ram = total - in_vram
        free_vram = _free_vram(read_vram)
        where = f"{on_gpu} of {total_layers} layers on the GPU"
        if in_ram > free_ram:
            fits = False
            reason = (f"will not fit: {human_bytes(in_ram)} must stay in RAM ({where}) but "
                      f"only {human_bytes(free_ram)} is free")
        elif free_vram is None:
            fits = True  # nothing known says otherwise; `vram_unknown` says what is missing
            vram_unknown = True
            reason = (f"VRAM unknown: needs about {human_bytes(total)} ({parts}); "
                      f"{human_bytes(in_vram)} goes to VRAM ({where}), whose free size could "
                      f"not be read (no nvidia-smi), so that part is not checked; "
                      f"{human_bytes(in_ram)} in RAM, {human_bytes(free_ram)} RAM free")
        elif in_vram > free_vram:
            fits = False
            reason = (f"will not fit: {human_bytes(in_vram)} goes to VRAM ({where}) but only "
                      f"{human_bytes(free_vram)} of VRAM is free; offload fewer GPU layers "
                      "or choose a smaller context or model")
        else:
            fits = True
            reason = (f"needs about {human_bytes(total)} ({parts}): {human_bytes(in_vram)} in "
                      f"VRAM ({where}), {human_bytes(free_vram)} VRAM free; "
                      f"{human_bytes(in_ram)} in RAM, {human_bytes(free_ram)} RAM free")
        device = "gpu"
    else:
        fits = total <= free_ram
        device = "gpu" if on_gpu else "cpu"
        shared = " (the GPU shares it)" if on_gpu else ""
        if fits:
            reason = f"needs about {human_bytes(total)} ({parts}); {human_bytes(free_ram)} RAM " \
                     f"free{shared}"
        else:
            reason = (f"will not fit: needs about {human_bytes(total)} ({parts}) but only "
                      f"{human_bytes(free_ram)} RAM is free{shared}; choose a smaller context "
                      "or model")
    return MemoryEstimate(
        weights_bytes=weights, kv_cache_bytes=kv, overhead_bytes=overhead, total_bytes=total,
        free_ram_bytes=free_ram, free_vram_bytes=free_vram, fits=fits, device=device,
        reason=reason, context_length=ctx, vram_bytes=in_vram, gpu_layers=on_gpu,
        vram_unknown=vram_unknown,
    )


def check_fits(path: Path, context_length: int, gpu_layers: int | None, batch_size: int) -> None:
    """Raise ModelError when the model will not fit in memory (the runtime calls this before
    it loads, unless told to try anyway)."""
    try:
        info = cached_gguf_info(path)
    except ModelError:
        return  # llama.cpp gives its own reason for a file we cannot read
    ctx = context_length or info.context_length or DEFAULT_CONTEXT
    est = estimate_memory(info, ctx, gpu_layers, batch_size)
    if not est.fits and est.free_ram_bytes > 0:
        raise WontFitError(f"{path.name} {est.reason}. {OVERSIZE_HINT}")
