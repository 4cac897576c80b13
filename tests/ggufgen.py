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


# Token types in a GGUF vocabulary (gguf.TokenType).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6

# Role and control tokens of model families, as their GGUF vocabularies spell them, and a
# chat template in each family's shape. DeepSeek's are user-defined in older conversions
# (llama.cpp then matches them even with special-token parsing off), as Gemma's
# <start_of_image> is in every Gemma 3 file.
FAMILIES: dict[str, dict] = {
    "deepseek": {
        "control": ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"],
        "user_defined": ["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"],
        "template": (
            "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}{{ m.content }}"
            "{% elif m.role == 'user' %}<｜User｜>{{ m.content }}{% else %}<｜Assistant｜>"
            "{{ m.content }}<｜end▁of▁sentence｜>{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}<｜Assistant｜>{% endif %}"),
        "bos": "<｜begin▁of▁sentence｜>", "eos": "<｜end▁of▁sentence｜>",
    },
    "mistral": {
        "control": ["<s>", "</s>", "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]",
                    "[TOOL_CALLS]", "[AVAILABLE_TOOLS]"],
        "user_defined": [],
        "template": (
            "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}[SYSTEM_PROMPT]"
            "{{ m.content }}[/SYSTEM_PROMPT]{% elif m.role == 'user' %}[INST]{{ m.content }}"
            "[/INST]{% else %}{{ m.content }}{{ eos_token }}{% endif %}{% endfor %}"),
        "bos": "<s>", "eos": "</s>",
    },
    "glm": {
        "control": ["[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>",
                    "<|endoftext|>"],
        "user_defined": [],
        "template": (
            "[gMASK]<sop>{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}"),
        "bos": "<sop>", "eos": "<|endoftext|>",
    },
    "gemma": {
        "control": ["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"],
        "user_defined": ["<start_of_image>", "<end_of_image>", "\n\n"],
        "template": (
            "{{ bos_token }}{% for m in messages %}<start_of_turn>"
            "{{ 'model' if m.role == 'assistant' else 'user' }}\n{{ m.content }}<end_of_turn>\n"
            "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"),
        "bos": "<bos>", "eos": "<eos>",
    },
}
ALL_ROLE_TOKENS = sorted({t for f in FAMILIES.values() for t in f["control"] + f["user_defined"]
                          if t.strip()})

_WORDS = ("the of and to in is it that for on as with was be by this are or from at an "
          "document source page title question answer system user model text").split()


def make_chat_model(
    path: Path,
    *,
    family: str = "gemma",
    template: str | None = "default",
    embd: int = 32,
    blocks: int = 1,
    context_length: int = 8192,
    extra_meta: dict | None = None,
) -> Path:
    """A tiny GGUF that llama.cpp loads and runs: a llama-architecture model with random
    weights and a SentencePiece vocabulary of bytes, letters, a few words and one model
    family's control and user-defined tokens (FAMILIES), with that family's chat template
    (template "default"), another, or none. Generation is noise; tokenization is real."""
    import gguf

    spec = FAMILIES[family]
    path = Path(path)
    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_name(f"Tiny {family} test model")
    w.add_context_length(context_length)
    w.add_embedding_length(embd)
    w.add_block_count(blocks)
    w.add_feed_forward_length(embd * 2)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_rope_dimension_count(embd // 2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(0)
    tokens, types = ["<unk>"], [UNKNOWN]
    for token in spec["control"]:
        tokens.append(token)
        types.append(CONTROL)
    for token in spec["user_defined"]:
        tokens.append(token)
        types.append(USER_DEFINED)
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(BYTE)
    pieces = ["\u2581"] + [chr(c) for c in range(33, 127)] + ["\u2581" + word for word in _WORDS]
    for piece in pieces:
        if piece not in tokens:
            tokens.append(piece)
            types.append(NORMAL)
    scores = [float(len(t)) if ty == NORMAL else 0.0 for t, ty in zip(tokens, types)]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(tokens.index(spec["bos"]))
    w.add_eos_token_id(tokens.index(spec["eos"]))
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    if template == "default":
        template = spec["template"]
    if template is not None:
        w.add_chat_template(template)
    for key, value in (extra_meta or {}).items():
        w.add_string(key, value)
    n = len(tokens)
    rng = np.random.default_rng(0)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    kv = embd // 2
    w.add_tensor("token_embd.weight", weights(n, embd))
    w.add_tensor("output_norm.weight", np.ones(embd, np.float32))
    w.add_tensor("output.weight", weights(n, embd))
    for b in range(blocks):
        w.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(embd, np.float32))
        w.add_tensor(f"blk.{b}.attn_q.weight", weights(embd, embd))
        w.add_tensor(f"blk.{b}.attn_k.weight", weights(kv, embd))
        w.add_tensor(f"blk.{b}.attn_v.weight", weights(kv, embd))
        w.add_tensor(f"blk.{b}.attn_output.weight", weights(embd, embd))
        w.add_tensor(f"blk.{b}.ffn_norm.weight", np.ones(embd, np.float32))
        w.add_tensor(f"blk.{b}.ffn_gate.weight", weights(embd * 2, embd))
        w.add_tensor(f"blk.{b}.ffn_up.weight", weights(embd * 2, embd))
        w.add_tensor(f"blk.{b}.ffn_down.weight", weights(embd, embd * 2))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
