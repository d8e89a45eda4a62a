"""Exporting to transformers: the reloaded model and tokenizer behave exactly like minigpt's.

Everything runs offline on local folders. The models are tiny versions of the course presets;
their weights are drawn with a large init_std so that greedy decoding never sits on a near-tie
that a 1e-7 rounding difference could flip.
"""

import json

import pytest
import torch

from minigpt.config import get_preset
from minigpt.corpus import load_documents
from minigpt.export import export_to_transformers, to_transformers_tokenizer
from minigpt.generate import generate
from minigpt.model import GPT
from minigpt.tokenizer import load_tokenizer

JAPANESE = "𠮷野家で牛丼を食べた😀。路地の猫が塀の上で眠っている🐈‍⬛\n名札はまだ付けていない！ ２０２６年"
TINY = dict(n_layer=2, n_head=4, n_embd=32, block_size=128, init_std=0.3)
PRESETS = {  # preset -> (tokenizer, overrides): GQA in modern, untied weights in moe
    "gpt2": ("gpt2", {}),
    "modern": ("sp", dict(n_kv_head=2)),
    "moe": ("sp", dict(mlp_hidden=32, tie_weights=False)),
}


@pytest.fixture(scope="module")
def sp_tokenizers(train_sp):
    kinds = {"unigram": {}, "bpe": dict(model_type="bpe"), "unigram-nfkc": dict(normalization="nfkc")}
    return {kind: train_sp("embedded", "train", vocab_size=4000, **options) for kind, options in kinds.items()}


@pytest.fixture(scope="module")
def exported(sp_tokenizers, tmp_path_factory):
    """preset -> (minigpt model, minigpt tokenizer, export folder), exported once per module."""
    out = {}
    for name, (tok_name, overrides) in PRESETS.items():
        tok = load_tokenizer("gpt2") if tok_name == "gpt2" else sp_tokenizers["unigram"]
        torch.manual_seed(0)
        model = GPT(get_preset(name, vocab_size=tok.vocab_size, **TINY, **overrides)).eval()
        folder = export_to_transformers(model, tok, tmp_path_factory.mktemp(f"hf-{name}"))
        out[name] = (model, tok, folder)
    return out


def _reload(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("name", list(PRESETS))
def test_reloaded_model_greedy_generates_the_same_tokens_as_minigpt(exported, name):
    model, tok, folder = exported[name]
    hf, hf_tok = _reload(folder)
    expected_class = {"gpt2": "GPT2LMHeadModel", "modern": "LlamaForCausalLM", "moe": "MixtralForCausalLM"}[name]
    assert type(hf).__name__ == expected_class
    prompt = hf_tok(JAPANESE, return_tensors="pt")  # the transformers tokenizer makes the prompt
    assert prompt["input_ids"][0].tolist() == tok.encode(JAPANESE)
    with torch.no_grad():
        theirs = hf.generate(**prompt, max_new_tokens=20, do_sample=False)[0, prompt["input_ids"].shape[1]:].tolist()
        torch.testing.assert_close(hf(**prompt).logits, model(prompt["input_ids"])[0], atol=1e-4, rtol=1e-4)
    ours = list(generate(model, tok.encode(JAPANESE), 20, temperature=0, eos_id=tok.eos_id))
    if theirs and theirs[-1] == tok.eos_id:  # transformers keeps the EOS it stopped at; minigpt does not yield it
        theirs = theirs[:-1]
    assert len(ours) > 0
    assert theirs == ours


@pytest.mark.parametrize("name", ["gpt2", "modern"])
def test_reloaded_tokenizer_has_minigpt_ids_on_rare_kanji_and_emoji(exported, name):
    _, tok, folder = exported[name]
    _, hf_tok = _reload(folder)
    text = "𠮷😀🍣🐈‍⬛ ｶﾀｶﾅ　全角スペース\n\n  改行とスペース"
    ids = tok.encode(text)
    assert hf_tok.encode(text, add_special_tokens=False) == ids
    assert hf_tok.decode(ids) == tok.decode(ids) == text


@pytest.mark.parametrize("kind", ["unigram", "bpe", "unigram-nfkc"])
def test_exported_sentencepiece_encodes_the_embedded_corpus_exactly(sp_tokenizers, kind):
    # the corpus has half-width katakana with dakuten (ﾄﾞ), which NFKC composes into one character
    tok = sp_tokenizers[kind]
    hf_tok = to_transformers_tokenizer(tok, model_max_length=10**6)
    docs = load_documents("embedded", "train") + load_documents("embedded", "val")
    theirs = hf_tok(docs, add_special_tokens=False)["input_ids"]
    for doc, ours, their in zip(docs, tok.encode_batch(docs), theirs):
        assert their == ours, doc[:40]
        assert hf_tok.decode(their) == tok.decode(ours)
        if kind != "unigram-nfkc":  # NFKC changes the text on purpose (ＡＢＣ -> ABC)
            assert hf_tok.decode(their) == doc
    assert any(tok.sp.is_byte(i) for ids in tok.encode_batch(["𠮷😀"]) for i in ids)  # byte fallback was exercised


@pytest.mark.parametrize("name", list(PRESETS))
def test_eos_is_bos_pad_and_the_generation_stop_token(exported, name):
    _, tok, folder = exported[name]
    gen = json.loads((folder / "generation_config.json").read_text())
    assert gen["eos_token_id"] == gen["bos_token_id"] == gen["pad_token_id"] == tok.eos_id
    _, hf_tok = _reload(folder)
    assert hf_tok.eos_token_id == hf_tok.bos_token_id == hf_tok.pad_token_id == tok.eos_id


def test_config_without_a_transformers_equivalent_raises_before_writing(tmp_path):
    model = GPT(get_preset("tiny-modern", attn_logits="softcap"))
    with pytest.raises(ValueError, match="no exact transformers equivalent"):
        export_to_transformers(model, None, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_static_ntk_scaling_is_refused_with_a_reason(tmp_path):
    model = GPT(get_preset("tiny-modern", rope_scaling={"type": "ntk", "factor": 2.0}))
    with pytest.raises(ValueError, match="dynamic"):
        export_to_transformers(model, None, tmp_path / "out")


def test_export_refuses_a_folder_that_already_holds_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    model = GPT(get_preset("tiny-modern"))
    with pytest.raises(ValueError, match="overwrite"):
        export_to_transformers(model, None, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_cli_exports_a_checkpoint(tmp_path, sp_tokenizers):
    from transformers import AutoModelForCausalLM

    from minigpt.checkpoint import save_checkpoint
    from minigpt.cli import main

    tok = sp_tokenizers["bpe"]
    torch.manual_seed(0)
    model = GPT(get_preset("tiny-modern", vocab_size=tok.vocab_size, attn_logits="qk_norm")).eval()
    save_checkpoint(tmp_path / "run" / "checkpoint", model, tokenizer=tok)
    assert main(["export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 0
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "Qwen3ForCausalLM"
    idx = torch.tensor([tok.encode(JAPANESE)])
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx)[0], atol=1e-5, rtol=1e-5)
    assert main(["export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "hf")]) == 2  # not empty


# ------------------------------------------------------------------------------ nothing half-exported
def _fail_while_saving(monkeypatch, error):
    from transformers import PreTrainedModel

    real = PreTrainedModel.save_pretrained

    def half_then_fail(self, folder, *args, **kwargs):
        real(self, folder, *args, **kwargs)  # the weights are on disk already, then the failure
        raise error

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", half_then_fail)


def test_a_failed_export_leaves_no_partial_folder_and_a_re_export_works(tmp_path, monkeypatch):
    model = GPT(get_preset("tiny-modern"))
    _fail_while_saving(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        export_to_transformers(model, None, tmp_path / "hf")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    folder = export_to_transformers(model, None, tmp_path / "hf")
    assert (folder / "model.safetensors").is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_an_export_on_a_full_disk_is_a_one_line_export_error(tmp_path, monkeypatch):
    from minigpt.errors import ExportError

    model = GPT(get_preset("tiny-modern"))
    _fail_while_saving(monkeypatch, OSError(28, "No space left on device"))
    with pytest.raises(ExportError, match="the disk is full") as err:
        export_to_transformers(model, None, tmp_path / "hf")
    assert "\n" not in str(err.value) and list(tmp_path.iterdir()) == []


def test_a_failed_overwrite_leaves_the_previous_export_as_it_was(tmp_path, monkeypatch):
    model = GPT(get_preset("tiny-modern"))
    folder = export_to_transformers(model, None, tmp_path / "hf")
    (folder / "notes.txt").write_text("keep me")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    _fail_while_saving(monkeypatch, OSError(28, "No space left on device"))
    with pytest.raises(Exception):
        export_to_transformers(GPT(get_preset("tiny-modern", init_std=0.5)), None, folder, overwrite=True)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    monkeypatch.undo()
    export_to_transformers(GPT(get_preset("tiny-modern", init_std=0.5)), None, folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "keep me"  # overwrite writes its files, keeps the others
    assert (folder / "model.safetensors").read_bytes() != before["model.safetensors"]


def test_export_into_a_file_is_refused(tmp_path):
    from minigpt.errors import ExportError

    (tmp_path / "f").write_text("x")
    with pytest.raises(ExportError, match="is a file"):
        export_to_transformers(GPT(get_preset("tiny-modern")), None, tmp_path / "f")
