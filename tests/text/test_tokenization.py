"""Tests for `lightning_gen.text.tokenization`: tiny tokenizers trained offline, no mocks."""

from __future__ import annotations

import doctest
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from lightning_gen.text import tokenization
from lightning_gen.text.tokenization import LoadedTokenizer, TextTokenizer, load_tokenizer

CORPUS = [
    "hello world",
    "the quick brown fox jumps over the lazy dog",
    "a tiny corpus for a tiny tokenizer",
    "hello there, general kenobi",
] * 4
SPECIALS = ["<unk>", "<pad>", "<eos>"]  # ids 0, 1, 2


@pytest.fixture(scope="module")
def bpe() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIALS, initial_alphabet=alphabet
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spm = pytest.importorskip("sentencepiece")
    prefix = tmp_path_factory.mktemp("sp") / "tiny"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_prefix=str(prefix),
        vocab_size=60,
        hard_vocab_limit=False,  # the corpus is too small to fill 60 pieces
        model_type="unigram",
        pad_id=3,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")


def test_docstring_examples_run() -> None:
    assert doctest.testmod(tokenization, raise_on_error=True).attempted >= 2


def test_tokenizer_json_path_round_trips(bpe: Tokenizer, tmp_path: Path) -> None:
    bpe.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer(tmp_path / "tokenizer.json")
    ids = tok.encode("hello world")
    assert ids == bpe.encode("hello world").ids
    assert all(type(i) is int for i in ids)
    assert tok.decode(ids) == "hello world"
    assert tok.decode([*ids, 2]) == "hello world<eos>"  # special tokens kept verbatim
    assert isinstance(tok.hf_tokenizer, PreTrainedTokenizerBase)
    assert tok.vocab_size == bpe.get_vocab_size()
    assert tok.eos_token_id is None  # a bare tokenizer.json does not say which token ends a text
    assert isinstance(tok, TextTokenizer)
    assert load_tokenizer(str(tmp_path / "tokenizer.json")).encode("hello world") == ids


def test_hf_folder_path_keeps_special_tokens(bpe: Tokenizer, tmp_path: Path) -> None:
    hf = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>", pad_token="<pad>")
    hf.save_pretrained(tmp_path)
    tok = load_tokenizer(tmp_path)
    assert (tok.eos_token_id, tok.pad_token_id, tok.vocab_size) == (2, 1, len(hf))
    ids = tok.encode("hello world<eos>")
    assert ids[-1] == 2  # the special token in the text is matched ...
    assert tok.encode("hello") == bpe.encode("hello").ids  # ... but none is added
    assert tok.decode(ids) == "hello world<eos>"
    assert tok.decode(torch.tensor(ids)) == "hello world<eos>"
    assert tok.hf_tokenizer is not None and tok.hf_tokenizer.eos_token == "<eos>"


def test_hf_and_tokenizers_objects_are_wrapped(bpe: Tokenizer) -> None:
    hf = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>", pad_token="<pad>")
    from_hf = load_tokenizer(hf)
    assert from_hf.hf_tokenizer is hf
    assert (from_hf.eos_token_id, from_hf.pad_token_id) == (2, 1)
    from_backend = load_tokenizer(bpe)
    assert from_backend.encode("the lazy dog") == bpe.encode("the lazy dog").ids
    assert from_backend.decode(bpe.encode("the lazy dog").ids + [2]) == "the lazy dog<eos>"
    assert from_backend.hf_tokenizer is not None
    assert load_tokenizer(from_backend) is from_backend


def test_sentencepiece_model_path(sp_model: Path) -> None:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_model))
    tok = load_tokenizer(sp_model)
    assert (tok.eos_token_id, tok.pad_token_id, tok.vocab_size) == (2, 3, sp.get_piece_size())
    assert tok.hf_tokenizer is None
    ids = tok.encode("hello world")
    assert ids == sp.encode("hello world") and sp.bos_id() not in ids
    assert tok.decode(ids) == "hello world"
    # sentencepiece itself drops control pieces; ours shows them, spaces intact on both sides.
    split = len(tok.encode("hello"))
    assert tok.decode([*ids[:split], 2, *ids[split:], 2]) == "hello</s> world</s>"
    assert load_tokenizer(sp).encode("hello world") == ids


def test_sentencepiece_missing_raises_install_hint(
    sp_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # makes `import sentencepiece` fail
    with pytest.raises(ImportError, match="pip install sentencepiece"):
        load_tokenizer(sp_model)


class CharTokenizer:
    """A user's character-level tokenizer returning tensors."""

    eos_token_id = 0
    pad_token_id = 1

    def encode(self, text: str) -> torch.Tensor:
        return torch.tensor([ord(c) for c in text])

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)

    def __len__(self) -> int:
        return 256


def test_custom_object_is_wrapped() -> None:
    tok = load_tokenizer(CharTokenizer())
    ids = tok.encode("hi!")
    assert ids == [104, 105, 33] and all(type(i) is int for i in ids)
    assert tok.decode(ids) == "hi!"
    assert (tok.eos_token_id, tok.pad_token_id, tok.vocab_size) == (0, 1, 256)
    assert tok.hf_tokenizer is None


def test_custom_object_optional_attributes() -> None:
    class Minimal:
        eos_token_id = (0, 3)

        def encode(self, text: str) -> tuple[int, ...]:
            return tuple(map(ord, text))

        def decode(self, ids: list[int]) -> str:
            return "".join(map(chr, ids))

    tok = load_tokenizer(Minimal())
    assert tok.encode("ab") == [97, 98]
    assert (tok.eos_token_id, tok.pad_token_id, tok.vocab_size) == ([0, 3], None, None)


def test_custom_encode_output_must_be_flat_ints() -> None:
    class Batched(CharTokenizer):
        def encode(self, text: str) -> torch.Tensor:
            return torch.tensor([[ord(c) for c in text]])

    with pytest.raises(TypeError, match=r"`tok\.encode\(text\)` must be"):
        load_tokenizer(Batched(), argument="tok").encode("hi")


def test_loaded_tokenizer_can_be_built_directly() -> None:
    tok = LoadedTokenizer(
        encode_fn=lambda s: [ord(c) for c in s], decode_fn=lambda ids: "".join(map(chr, ids))
    )
    assert load_tokenizer(tok) is tok
    assert tok.decode(tok.encode("ok")) == "ok"


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "tokenizer.json"
    with pytest.raises(FileNotFoundError, match="`tokenizer`") as info:
        load_tokenizer(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(FileNotFoundError, match="`sample_tokenizer`"):
        load_tokenizer(str(missing), argument="sample_tokenizer")


def test_folder_without_tokenizer_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a tokenizer")
    with pytest.raises(ValueError, match="`tok` path must be .*tokenizer_config.json") as info:
        load_tokenizer(tmp_path, argument="tok")
    assert str(tmp_path) in str(info.value)


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    path.write_text("a\nb\n")
    with pytest.raises(ValueError, match=r"`tokenizer` path must be .*\*\.model") as info:
        load_tokenizer(path)
    assert str(path) in str(info.value)


def test_malformed_files_name_the_path(tmp_path: Path) -> None:
    bad_json = tmp_path / "tokenizer.json"
    bad_json.write_text('{"not": "a tokenizer"}')
    with pytest.raises(ValueError, match="`tokenizer` path .* could not be loaded") as info:
        load_tokenizer(bad_json)
    assert str(bad_json) in str(info.value)
    pytest.importorskip("sentencepiece")
    bad_model = tmp_path / "bad.model"
    bad_model.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="could not be loaded"):
        load_tokenizer(bad_model)


def test_object_without_decode() -> None:
    class EncodeOnly:
        def encode(self, text: str) -> list[int]:
            return [0]

    with pytest.raises(TypeError, match="`my_tok` .*EncodeOnly.*lacks `decode`"):
        load_tokenizer(EncodeOnly(), argument="my_tok")
    with pytest.raises(TypeError, match="int, which lacks `encode` and `decode`"):
        load_tokenizer(3)


def test_a_tiktoken_encoding_gives_its_size_and_end_of_text() -> None:
    from tiny import byte_tiktoken

    pytest.importorskip("tiktoken")
    enc = byte_tiktoken()
    tok = load_tokenizer(enc)
    assert (tok.vocab_size, tok.eos_token_id) == (enc.n_vocab, enc.eot_token) == (261, 260)
    assert tok.decode(tok.encode("the cat")) == "the cat"
    assert tokenization.decodable_ids(tok, below=50304) == 261  # nanoGPT's padded logits: only the real ids


def test_the_size_of_a_tokenizer_with_only_get_vocab_is_its_largest_id_plus_one() -> None:
    class Vocab(CharTokenizer):
        __len__ = None  # type: ignore[assignment]

        def get_vocab(self) -> dict[str, int]:
            return {"a": 0, "b": 7, "c": 3}

    assert load_tokenizer(Vocab()).vocab_size == 8


def test_a_tokenizer_that_says_nothing_of_its_size_is_asked_through_decode() -> None:
    """nanoGPT's char tokenizer from meta.pkl: encode/decode lambdas over stoi/itos."""
    itos = dict(enumerate("\n !abcdefghij"))
    stoi = {c: i for i, c in itos.items()}
    tok = load_tokenizer(type("Meta", (), {"encode": staticmethod(lambda s: [stoi[c] for c in s]),
                                            "decode": staticmethod(lambda ids: "".join(itos[i] for i in ids))})())
    assert tok.vocab_size is None
    assert tokenization.decodable_ids(tok, below=128) == len(itos)
    assert tokenization.decodable_ids(tok, below=5) == 5
    refuses_all = LoadedTokenizer(encode_fn=list, decode_fn=lambda ids: "".join(itos[i + 100] for i in ids))
    with pytest.raises(ValueError, match="refuses id 0"):
        tokenization.decodable_ids(refuses_all, below=8)
