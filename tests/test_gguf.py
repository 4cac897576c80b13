"""Our GGUF header reader on the real starter model and on GGUFs written by the `gguf` package,
including the broken and hostile files a models folder or a download can hold."""

from __future__ import annotations

import struct

import pytest
from ggufgen import CHATML, make_gguf, tensor_parameters

from app.core.models.gguf import MAX_KEPT_ARRAY, read_gguf_info
from app.core.models.files import ModelError


def test_starter_model_header(starter_model):
    info = read_gguf_info(starter_model)
    assert info.version == 3
    assert info.architecture == "gemma3"
    assert info.name == "Gemma 3 270m"
    assert info.quantization == "Q4_K_M"  # general.file_type 15
    assert info.context_length == 32768
    assert info.block_count == 18 and info.embedding_length == 640
    assert info.head_count == 4 and info.head_count_kv == 1
    assert info.key_length == 256 and info.value_length == 256
    assert info.sliding_window == 512
    assert info.swa_layers() == 15  # llama.cpp: every 6th Gemma 3 layer is global
    assert info.license == "gemma"
    assert not info.has_chat_template and info.chat_template is None  # a base model
    assert info.file_size == starter_model.stat().st_size
    assert info.vocab_size == 262144
    # No general.parameter_count in this file: counted from the 236 tensor shapes.
    assert info.tensor_count == 236
    assert 260_000_000 < info.parameter_count < 280_000_000
    assert info.parameters_label() == "268M"


def test_starter_model_matches_llama_cpp(llm, starter_model):
    """What we read is what llama.cpp reads."""
    info = read_gguf_info(starter_model)
    assert info.parameter_count == llm.info.n_params
    assert info.context_length == llm.info.n_ctx_train
    assert info.architecture == llm.info.architecture


def test_written_gguf_with_chat_template_license_and_arrays(tmp_path):
    path = make_gguf(tmp_path / "chat.gguf", chat_template=CHATML, license="apache-2.0",
                     context_length=8192, blocks=3, embd=64, heads=4, heads_kv=2)
    info = read_gguf_info(path)
    assert info.version == 3 and info.architecture == "llama"
    assert info.name == "Tiny Test Model"
    assert info.has_chat_template and info.chat_template == CHATML
    assert info.license == "apache-2.0"
    assert info.context_length == 8192 and info.block_count == 3
    assert info.head_count == 4 and info.head_count_kv == 2
    assert info.key_length == info.value_length == 64 // 4  # derived: embd / heads
    assert info.quantization == "F16"  # file_type 1
    assert info.parameter_count == tensor_parameters(blocks=3)
    assert info.vocab_size == 300
    # Short arrays are kept with their values (long ones: see the next test).
    assert info.metadata["llama.test.per_layer"] == (0, 1, 2)
    assert info.metadata["tokenizer.ggml.tokens"][:2] == ("tok0", "tok1")


def test_without_template_license_or_file_type(tmp_path):
    path = make_gguf(tmp_path / "base.gguf", chat_template=None, license=None, name=None,
                     file_type=None)
    info = read_gguf_info(path)
    assert not info.has_chat_template and info.chat_template is None
    assert info.license is None and info.name is None
    # No general.file_type: the type that holds most matrix weights.
    assert info.quantization == "F16"


def test_version_2_reads_like_version_3(tmp_path):
    path = make_gguf(tmp_path / "v2.gguf", chat_template=CHATML, version=2)
    info = read_gguf_info(path)
    assert info.version == 2 and info.chat_template == CHATML and info.block_count == 2


def test_long_arrays_are_skipped_not_kept(tmp_path):
    path = make_gguf(tmp_path / "vocab.gguf", vocab=MAX_KEPT_ARRAY * 3)
    info = read_gguf_info(path)
    assert info.vocab_size == MAX_KEPT_ARRAY * 3
    assert "tokenizer.ggml.tokens" not in info.metadata
    assert "tokenizer.ggml.scores" not in info.metadata


def test_unknown_version_is_refused(tmp_path):
    path = make_gguf(tmp_path / "v9.gguf", version=9)
    with pytest.raises(ModelError, match="version 9"):
        read_gguf_info(path)


@pytest.mark.parametrize("content", [b"", b"GG", b"PK\x03\x04" + b"\0" * 100,
                                     b"<html>not found</html>" * 10])
def test_wrong_magic_is_refused(tmp_path, content):
    path = tmp_path / "fake.gguf"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="fake.gguf is not a GGUF model file"):
        read_gguf_info(path)


def test_truncated_files_are_refused_at_every_cut(tmp_path):
    path = make_gguf(tmp_path / "whole.gguf", chat_template=CHATML, tensor_mb=0.5)
    data = path.read_bytes()
    assert read_gguf_info(path).tensor_count > 0
    # In the counts, in the metadata (the template, the vocabulary), in the tensor
    # descriptions, and in the tensor data (the header is whole there: a cut download).
    for cut in (6, 20, 100, len(CHATML), 2000, 4000, len(data) // 2, len(data) - 1):
        part = tmp_path / "cut.gguf"
        part.write_bytes(data[:cut])
        with pytest.raises(ModelError, match="truncated"):
            read_gguf_info(part)


def _hostile(path, body: bytes, n_tensors=0, n_kv=1):
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + body)
    return path


def _key(name: str) -> bytes:
    return struct.pack("<Q", len(name)) + name.encode()


def test_hostile_string_length_is_refused_without_allocating(tmp_path):
    # A chat template that claims 2**60 bytes.
    body = _key("tokenizer.chat_template") + struct.pack("<IQ", 8, 2**60) + b"x" * 64
    path = _hostile(tmp_path / "huge.gguf", body)
    with pytest.raises(ModelError, match="tokenizer.chat_template"):
        read_gguf_info(path)
    # A key that claims 2**62 bytes.
    path = _hostile(tmp_path / "huge_key.gguf", struct.pack("<Q", 2**62) + b"x" * 64)
    with pytest.raises(ModelError, match="truncated or corrupt"):
        read_gguf_info(path)


def test_hostile_array_and_counts_are_refused(tmp_path):
    body = _key("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2**61)
    with pytest.raises(ModelError, match="tokenizer.ggml.tokens"):
        read_gguf_info(_hostile(tmp_path / "arr.gguf", body))
    body = _key("x") + struct.pack("<IIQ", 9, 4, 10**15)  # a billion-billion uint32s
    with pytest.raises(ModelError, match="truncated or corrupt"):
        read_gguf_info(_hostile(tmp_path / "arr2.gguf", body))
    with pytest.raises(ModelError, match="corrupt"):
        read_gguf_info(_hostile(tmp_path / "counts.gguf", b"", n_tensors=2**40, n_kv=2**40))
    body = _key("general.name") + struct.pack("<I", 77)  # no such value type
    with pytest.raises(ModelError, match="unknown value type 77"):
        read_gguf_info(_hostile(tmp_path / "type.gguf", body))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        read_gguf_info(tmp_path / "nope.gguf")
    with pytest.raises(ModelError, match="folder"):
        read_gguf_info(tmp_path)


def test_parameters_label(tmp_path):
    import dataclasses

    info = read_gguf_info(make_gguf(tmp_path / "m.gguf"))
    for n, label in ((268_098_176, "268M"), (1_543_714_304, "1.5B"), (3_000_000_000, "3B"),
                     (7_241_732_096, "7.2B"), (70_553_706_496, "70.6B"), (551_808, "552K"), (12_345, "12.3K")):
        assert dataclasses.replace(info, parameter_count=n).parameters_label() == label


def test_type_tables_match_the_gguf_package():
    """Our reader keeps its own bounded parser but not its own facts: the ggml type tables
    must say what llama.cpp's gguf-py says (bumping the gguf pin shows what to add)."""
    gguf = pytest.importorskip("gguf")
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

    from app.core.models.gguf import BLOCK_SIZES, FILE_TYPES, TENSOR_TYPES

    assert gguf is not None
    for q in GGMLQuantizationType:
        assert TENSOR_TYPES.get(q.value) == q.name, q
        assert BLOCK_SIZES.get(q.value) == GGML_QUANT_SIZES.get(q), q
    for f in LlamaFileType:
        if f.name == "GUESSED":  # a flag llama.cpp ORs in, not a type
            continue
        assert FILE_TYPES.get(f.value) == f.name.removeprefix("MOSTLY_").removeprefix("ALL_"), f


# -- the header is capped in total, not only per value -------------------------------------


def test_kept_metadata_is_capped_in_total(tmp_path):
    """Each string is under the per-string cap; together they are over the total cap."""
    from app.core.models import gguf as gguf_mod

    mib = 1024 * 1024
    n = gguf_mod.MAX_KEPT_TOTAL // mib + 8
    path = make_gguf(tmp_path / "many.gguf",
                     extra={f"folio.test.s{i}": chr(65 + i % 26) * mib for i in range(n)})
    info = gguf_mod.read_gguf_info(path)
    kept = sum(len(v) for v in info.metadata.values() if isinstance(v, str))
    assert kept <= gguf_mod.MAX_KEPT_TOTAL
    assert info.architecture == "llama" and info.block_count == 2  # the rest is still read


def test_a_header_over_the_total_cap_is_refused_quickly(tmp_path):
    """A header of millions of tiny values (each read one by one) or of many big ones: refused
    with the reason once it passes the cap, long before the end of the file."""
    import time

    from app.core.models import gguf as gguf_mod

    mib = 1024 * 1024
    n = gguf_mod.MAX_HEADER_BYTES // mib + 4
    path = make_gguf(tmp_path / "big-header.gguf",
                     extra={f"folio.test.s{i}": "y" * mib for i in range(n)})
    started = time.monotonic()
    with pytest.raises(gguf_mod.HeaderTooLarge, match="header larger than 64 MB"):
        gguf_mod.read_gguf_info(path)
    assert time.monotonic() - started < 30  # generous on a loaded 2-core machine
