"""Export a minigpt model and its tokenizer as a transformers model folder (chapter 10).

    >>> export_to_transformers(model, tok, "runs/demo/hf")                      # doctest: +SKIP
    >>> from transformers import AutoModelForCausalLM, AutoTokenizer
    >>> hf = AutoModelForCausalLM.from_pretrained("runs/demo/hf")              # doctest: +SKIP
    >>> hf_tok = AutoTokenizer.from_pretrained("runs/demo/hf")                 # doctest: +SKIP
    >>> out = hf.generate(**hf_tok("昔々", return_tensors="pt"), max_new_tokens=20)  # doctest: +SKIP

or from the command line (minigpt/cli/export.py): `python -m minigpt export --checkpoint runs/demo --out runs/demo/hf`.

What is written, and why it is exact:
- the model: the transformers class that computes what this GPTConfig computes
  (`minigpt.hf.architecture`: GPT2LMHeadModel, LlamaForCausalLM, Qwen3ForCausalLM or
  MixtralForCausalLM), holding our weights through minigpt.hf's weight map, saved with
  `save_pretrained` (config.json, model.safetensors, generation_config.json). A config with no
  transformers equivalent (soft-capped logits, switch gating, static NTK scaling...) raises
  `ExportRefused` (an `ExportError` and a `ValueError`) before anything is written.
- the tokenizer, as a `PreTrainedTokenizerFast` (tokenizer.json): GPT-2's BPE as it is; a
  SentencePiece model rebuilt with the `tokenizers` library (`sentencepiece_to_tokenizers`), piece
  for piece and score for score, so the ids are the same. Exported tokenizers are checked against
  ours on a sample text before anything is written.
- special tokens: minigpt trains on documents joined by EOS and starts a new document from EOS,
  so EOS plays all three roles, as in GPT-2: bos = eos = pad = EOS (`</s>` for SentencePiece,
  `<|endoftext|>` for GPT-2), and `generate()` stops at it.

One known difference: a text that spells a special piece literally (`</s>`, `<s>`, `<unk>`)
becomes that special token in transformers (as `<|endoftext|>` does with GPT-2 in both), and with
a unigram model a byte piece's name (`<0x41>`) may match that piece; minigpt's SentencePiece
tokenizer spells such text out character by character. Ordinary text is encoded identically.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from minigpt.errors import ExportError
from minigpt.files import free_bytes, is_disk_full
from minigpt.i18n import tr

__all__ = ["export_to_transformers", "to_transformers_tokenizer", "sentencepiece_to_tokenizers",
           "CHECK_TEXT", "ExportError", "ExportRefused"]


class ExportRefused(ExportError, ValueError):
    """This model, tokenizer or --out folder cannot be exported; nothing was written."""

# What an exported tokenizer must encode exactly like ours: kana, kanji, a 4-byte kanji (𠮷),
# emoji, full-width and half-width forms, digits, runs of spaces, tabs and newlines.
CHECK_TEXT = ("駅前の古い喫茶店が、来月で閉店するらしい。\n𠮷野家で牛丼を食べた😀🍣！ ＡＢＣ ｶﾀｶﾅ ｷﾄﾞｳ 2026年１２月\n\n"
              "  two  spaces\tand a tab, Ωμέγα, café")


# ------------------------------------------------------------------------------------ tokenizer
def sentencepiece_to_tokenizers(tok):
    """A `tokenizers.Tokenizer` that encodes and decodes like a minigpt SentencePieceTokenizer.

    SentencePiece's own pipeline, step by step, and its `tokenizers` counterpart:
      normalize (identity, or NFKC & co. as a precompiled table) -> normalizers.Precompiled
      spaces become the mark "▁" (no dummy prefix, spaces kept)  -> normalizers.Replace(" ", "▁")
      user-defined pieces ("\\n") are always one token            -> added tokens, not special
      unigram: best segmentation by the pieces' log-probabilities -> models.Unigram(pieces, scores)
      bpe: merge the pair whose result has the highest score      -> models.BPE(vocab, merges by score)
      a character outside the vocabulary -> its UTF-8 bytes      -> byte_fallback=True
      decode: "▁" -> " ", byte pieces joined into characters     -> decoders Replace, ByteFallback, Fuse
    Reading the piece types and the model type needs the `protobuf` package.
    """
    try:
        from sentencepiece import sentencepiece_model_pb2 as pb
    except ImportError:  # the generated module imports google.protobuf
        raise ExportError(tr("exporting a SentencePiece tokenizer reads its model file with protobuf: "
                             "pip install protobuf",
                             "SentencePiece トークナイザのエクスポートにはモデルファイルを読む protobuf が必要です: "
                             "pip install protobuf")) from None
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

    proto = pb.ModelProto()
    proto.ParseFromString(tok.sp.serialized_model_proto())
    trainer, norm = proto.trainer_spec, proto.normalizer_spec
    if norm.add_dummy_prefix or norm.remove_extra_whitespaces or not norm.escape_whitespaces \
            or trainer.treat_whitespace_as_suffix:
        raise ExportRefused(tr("{file}: only SentencePiece models trained like train_sentencepiece's "
                               "(add_dummy_prefix=False, remove_extra_whitespaces=False) can be exported exactly; "
                               "retrain the tokenizer with minigpt.tokenizer.train_sentencepiece",
                               "{file}: 正確にエクスポートできるのは、train_sentencepiece と同じ設定 "
                               "(add_dummy_prefix=False、remove_extra_whitespaces=False) で学習した SentencePiece "
                               "モデルだけです。minigpt.tokenizer.train_sentencepiece でトークナイザを学習し直して"
                               "ください", file=tok.model_file))
    Piece = pb.ModelProto.SentencePiece
    pieces = [(p.piece, p.score) for p in proto.pieces]
    if trainer.model_type == pb.TrainerSpec.UNIGRAM:
        hf = Tokenizer(models.Unigram(pieces, unk_id=trainer.unk_id, byte_fallback=trainer.byte_fallback))
    elif trainer.model_type == pb.TrainerSpec.BPE:
        vocab = {piece: i for i, (piece, _) in enumerate(pieces)}
        hf = Tokenizer(models.BPE(vocab, _bpe_merges(proto, vocab, Piece.NORMAL), unk_token=trainer.unk_piece,
                                  fuse_unk=True, byte_fallback=trainer.byte_fallback))
    else:
        raise ExportRefused(tr("{file}: SentencePiece model type {t} is not unigram or bpe; train the tokenizer "
                               "with train_sentencepiece(model_type='unigram' or 'bpe')",
                               "{file}: SentencePiece のモデルの種類 {t} は unigram でも bpe でもありません。"
                               "train_sentencepiece(model_type='unigram' または 'bpe') でトークナイザを学習して"
                               "ください", file=tok.model_file, t=trainer.model_type))
    steps = [normalizers.Replace(" ", "\u2581")]
    if norm.precompiled_charsmap:  # nfkc & co.; "identity" has no table
        # tokenizers applies the table character by character and can leave a decomposed result
        # (half-width ﾄﾞ -> ト + U+3099) where SentencePiece composes it (ド): NFC composes it back.
        steps[:0] = [normalizers.Precompiled(norm.precompiled_charsmap), normalizers.NFC()]
    hf.normalizer = normalizers.Sequence(steps)
    hf.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    # Control pieces (<s>, </s>) and <unk> become special tokens; user-defined ones ("\n") plain
    # added tokens, matched before the model runs, exactly as SentencePiece always keeps them whole.
    added = [AddedToken(p.piece, normalized=False, special=p.type != Piece.USER_DEFINED)
             for p in proto.pieces if p.type in (Piece.CONTROL, Piece.UNKNOWN, Piece.USER_DEFINED)]
    hf.add_tokens(added)
    return hf


def _bpe_merges(proto, vocab: dict[str, int], normal) -> list[tuple[str, str]]:
    """SentencePiece BPE merges the adjacent pair whose merged piece has the highest score; as a
    ranked merge list: every split (left, right) of every piece, ordered by that piece's score."""
    merges = []
    for i, p in enumerate(proto.pieces):
        if p.type != normal:
            continue
        for k in range(1, len(p.piece)):
            left, right = p.piece[:k], p.piece[k:]
            if left in vocab and right in vocab:
                merges.append((-p.score, i, vocab[left], vocab[right], left, right))
    merges.sort()
    return [(left, right) for *_, left, right in merges]


def to_transformers_tokenizer(tok, model_max_length: int | None = None):
    """A `transformers.PreTrainedTokenizerFast` with the same ids as the minigpt tokenizer `tok`.

    EOS is also BOS and PAD (see the module docstring). Raises RuntimeError if the result does not
    encode CHECK_TEXT exactly like `tok` (that would be a bug: please report it).
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from minigpt.tokenizer import GPT2Tokenizer, SentencePieceTokenizer

    if isinstance(tok, GPT2Tokenizer):  # a copy: transformers may change its backend's settings
        backend, unk = Tokenizer.from_str(tok.hf_tokenizer.to_str()), tok.eos_token
    elif isinstance(tok, SentencePieceTokenizer):
        backend, unk = sentencepiece_to_tokenizers(tok), tok.sp.id_to_piece(tok.sp.unk_id())
    else:
        raise ExportRefused(tr("cannot export a {kind}: only GPT2Tokenizer and SentencePieceTokenizer have a "
                               "transformers equivalent",
                               "{kind} はエクスポートできません。transformers に対応するものがあるのは "
                               "GPT2Tokenizer と SentencePieceTokenizer だけです", kind=type(tok).__name__))
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=tok.eos_token, eos_token=tok.eos_token,
                                     pad_token=tok.eos_token, unk_token=unk, clean_up_tokenization_spaces=False,
                                     model_max_length=model_max_length or 1024)
    ours = tok.encode(CHECK_TEXT)
    theirs = hf_tok.encode(CHECK_TEXT, add_special_tokens=False, verbose=False)  # no max-length warning
    if ours != theirs or hf_tok.decode(theirs) != tok.decode(ours):
        at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        raise RuntimeError(tr("the exported {name} tokenizer does not reproduce minigpt's ids on a check text "
                              "(from token {at}: ours {ours}, transformers {theirs}; or the decoded texts differ); "
                              "this is a bug, please report it",
                              "エクスポートした {name} トークナイザが、確認用の文で minigpt と同じ ID を出しません "
                              "(トークン {at} から: minigpt {ours}、transformers {theirs}。またはデコード結果が違います)。"
                              "バグですので報告してください",
                              name=tok.name, at=at, ours=ours[at:at + 6], theirs=theirs[at:at + 6]))
    return hf_tok


# ------------------------------------------------------------------------------------ model
def export_to_transformers(model, tokenizer, out_dir, *, overwrite: bool = False) -> Path:
    """Save `model` (and `tokenizer`, if not None) as a transformers model folder; returns its path.

    The folder loads offline with AutoModelForCausalLM / AutoTokenizer.from_pretrained(out_dir).
    Weights are written in float32. Refuses a folder that already holds files unless overwrite=True.

    Nothing is ever half-exported: everything is written into a temp folder beside `out_dir`
    (`.NAME.export-tmp`) and moved into place only when complete, so a failure (a full disk raises a
    one-line `ExportError`) leaves `out_dir` as it was and the same export can simply be run again.
    """
    from transformers import GenerationConfig

    from minigpt.hf import architecture, hf_model_from_minigpt

    cfg = model.config
    try:
        architecture(cfg)  # names what transformers supports, before anything is written
    except ValueError as e:
        raise ExportRefused(tr("cannot export this model: {e}", "このモデルはエクスポートできません: {e}",
                               e=e)) from None
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportRefused(tr("{out} is a file; pass a folder to export into (--out)",
                               "{out} はファイルです。エクスポート先のフォルダを --out に指定してください", out=out))
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportRefused(tr("{out} already holds files; choose an empty or new folder, or pass overwrite=True "
                               "(--overwrite) to write over them",
                               "{out} にはすでにファイルがあります。空のフォルダか新しいフォルダを指定するか、"
                               "overwrite=True（--overwrite）で上書きしてください", out=out))
    if tokenizer is not None and tokenizer.vocab_size > cfg.vocab_size:
        raise ExportRefused(tr("the tokenizer has {t} tokens but the model only {m}: this is not the tokenizer the "
                               "model was trained with",
                               "トークナイザのトークンは {t} 個ですが、モデルは {m} 個しか持ちません。"
                               "このモデルを学習したトークナイザではありません", t=tokenizer.vocab_size, m=cfg.vocab_size))

    hf_tok = to_transformers_tokenizer(tokenizer, cfg.block_size) if tokenizer is not None else None
    eos = tokenizer.eos_id if tokenizer is not None else None
    special = dict(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    hf = hf_model_from_minigpt(model, **special)
    hf.generation_config = GenerationConfig(**special)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.export-tmp")
    if tmp.exists():
        shutil.rmtree(tmp)  # left by an export that was killed; never a real export
    try:
        tmp.mkdir()
        hf.save_pretrained(tmp)
        if hf_tok is not None:
            hf_tok.save_pretrained(tmp)
        _move_into_place(tmp, out)
    except BaseException as e:
        full = isinstance(e, Exception) and is_disk_full(e, out.parent)
        free = free_bytes(out.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            shown = f"{free / 1e6:.1f} MB" if free is not None else "?"
            raise ExportError(tr(
                "cannot export to {out}: the disk is full ({free} free; {err}); nothing was left half-written. "
                "Free some space or pass another --out, then run the export again.",
                "{out} にエクスポートできません: ディスクがいっぱいです（空き {free}、{err}）。書きかけのファイルは"
                "残していません。空き容量を作るか別の --out を指定して、もう一度エクスポートしてください。",
                out=out, free=shown, err=type(e).__name__)) from None
        raise
    return out


def _move_into_place(tmp: Path, out: Path) -> None:
    """A new or empty `out`: one rename. An existing folder (overwrite): file by file, each atomic,
    keeping the files of `out` that the export does not write."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        os.replace(tmp, out)
        return
    for item in tmp.iterdir():
        target = out / item.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(item, target)
    tmp.rmdir()
