"""Write small but real GGUF files with the `gguf` package (the format's reference writer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_gguf(
    path: Path,
    *,
    arch: str = "llama",
    name: str | None = "Tiny Test Model",
    chat_template: str | None = None,
    license: str | None = None,
    context_length: int = 2048,
    blocks: int = 2,
    embd: int = 64,
    heads: int = 4,
    heads_kv: int = 2,
    vocab: int = 300,
    file_type: int | None = 1,
    tensor_mb: float = 0.0,
    sliding_window: int | None = None,
    version: int = 3,
    extra: dict | None = None,
) -> Path:
    """A GGUF with llama-like metadata, a vocabulary array and a few F16/F32 tensors.
    tensor_mb adds one big tensor so downloads have something to transfer."""
    import gguf

    path = Path(path)
    w = gguf.GGUFWriter(str(path), arch=arch)
    if name:
        w.add_name(name)
    w.add_context_length(context_length)
    w.add_block_count(blocks)
    w.add_embedding_length(embd)
    w.add_head_count(heads)
    w.add_head_count_kv(heads_kv)
    if file_type is not None:
        w.add_file_type(file_type)
    if license:
        w.add_license(license)
    if chat_template:
        w.add_chat_template(chat_template)
    if sliding_window:
        w.add_sliding_window(sliding_window)
    w.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(vocab)])
    w.add_array("tokenizer.ggml.scores", [float(i) for i in range(vocab)])
    w.add_array(f"{arch}.test.per_layer", list(range(blocks)))
    for key, value in (extra or {}).items():
        w.add_string(key, value)
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.standard_normal((vocab, embd)).astype(np.float16))
    for b in range(blocks):
        w.add_tensor(f"blk.{b}.attn_q.weight",
                     rng.standard_normal((embd, embd)).astype(np.float16))
        w.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(embd, dtype=np.float32))
    if tensor_mb:
        n = int(tensor_mb * 1024 * 1024 / 2)
        w.add_tensor("blk.0.ffn_up.weight",
                     rng.standard_normal((n // embd, embd)).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if version != 3:  # v2 and v3 share the layout; v3 only added big-endian files
        with path.open("r+b") as f:
            f.seek(4)
            f.write(int(version).to_bytes(4, "little"))
    return path


def tensor_parameters(vocab: int = 300, embd: int = 64, blocks: int = 2) -> int:
    return vocab * embd + blocks * (embd * embd + embd)
