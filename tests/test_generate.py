"""Sampling (minigpt.generate): temperature, top-k, top-p, seeds, the KV cache, safe streaming."""

import pytest
import torch

from minigpt.config import get_preset
from minigpt.generate import Utf8Guard, filter_logits, generate, generate_text, sample_next
from minigpt.model import GPT

from helpers import ByteTokenizer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(get_preset("tiny-modern", vocab_size=257)).eval()


def draws(logits, n=400, **kw):
    g = torch.Generator().manual_seed(0)
    return {int(sample_next(logits, generator=g, **kw)) for _ in range(n)}


def test_temperature_zero_is_argmax():
    logits = torch.tensor([[0.1, 2.0, -1.0, 1.9], [3.0, 0.0, 0.0, 2.9]])
    assert sample_next(logits, temperature=0).tolist() == [1, 0]
    assert sample_next(logits[0], temperature=0, top_k=2).item() == 1


def test_top_k_draws_only_the_k_most_likely_tokens():
    logits = torch.tensor([1.0, 4.0, 3.0, 2.0, 0.0])
    assert draws(logits, top_k=2) == {1, 2}
    assert draws(logits, top_k=1) == {1}
    assert draws(logits) == {0, 1, 2, 3, 4}  # without top_k every token can come up


def test_top_p_keeps_the_smallest_set_that_reaches_p():
    logits = torch.tensor([0.05, 0.5, 0.15, 0.3]).log()  # sorted: 0.5, 0.3, 0.15, 0.05
    kept = lambda p: set(torch.nonzero(filter_logits(logits, top_p=p) > float("-inf")).flatten().tolist())
    assert kept(0.5) == {1}  # the most likely token alone reaches 0.5
    assert kept(0.79) == {1, 3}
    assert kept(0.81) == {1, 3, 2}
    assert kept(0.01) == {1}  # the most likely token is always kept
    assert draws(logits, top_p=0.79) == {1, 3}


def test_top_k_and_top_p_together_apply_both_limits():
    logits = torch.tensor([0.4, 0.3, 0.2, 0.1]).log()
    assert draws(logits, top_k=3, top_p=0.65) == {0, 1}
    assert draws(logits, top_k=2, top_p=0.95) == {0, 1}


def test_sampling_follows_the_softmax_of_logits_over_temperature():
    logits = torch.tensor([0.0, 1.0])
    g = torch.Generator().manual_seed(0)
    ones = sum(int(sample_next(logits, temperature=0.5, generator=g)) for _ in range(4000)) / 4000
    expected = torch.softmax(logits / 0.5, dim=-1)[1].item()  # 0.88
    assert abs(ones - expected) < 0.03


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5)])
def test_invalid_sampling_options_are_refused(bad):
    with pytest.raises(ValueError):
        sample_next(torch.zeros(4), **bad)


def test_the_same_seed_gives_the_same_tokens(model):
    a = list(generate(model, [1, 2, 3], 20, seed=11))
    b = list(generate(model, [1, 2, 3], 20, seed=11))
    c = list(generate(model, [1, 2, 3], 20, seed=12))
    assert a == b and len(a) == 20 and a != c


def test_generation_does_not_use_the_global_rng(model):
    torch.manual_seed(0)
    state = torch.get_rng_state()
    list(generate(model, [1, 2], 10, seed=3))
    list(generate(model, [1, 2], 10))  # seed=None: fresh entropy, still not the global RNG
    assert torch.equal(torch.get_rng_state(), state)


def test_the_kv_cache_gives_the_same_greedy_tokens_as_recomputing(model):
    prompt = [5, 6, 7, 8]
    with_cache = list(generate(model, prompt, 20, temperature=0, use_cache=True, stop_at_eos=False))
    without = list(generate(model, prompt, 20, temperature=0, use_cache=False, stop_at_eos=False))
    assert with_cache == without


@pytest.mark.parametrize("use_cache", [True, False])
def test_generation_runs_past_the_block_size_on_a_cropped_context(model, use_cache):
    block = model.config.block_size
    prompt = list(range(1, block + 5))  # longer than the context already
    out = list(generate(model, prompt, block + 10, seed=0, use_cache=use_cache, stop_at_eos=False))
    assert len(out) == block + 10


def test_generation_stops_at_eos_without_yielding_it(model):
    eos = int(list(generate(model, [3, 4], 1, temperature=0, stop_at_eos=False))[0])
    assert list(generate(model, [3, 4], 5, temperature=0, eos_id=eos)) == []


def test_an_empty_prompt_starts_from_eos_or_is_refused(model):
    assert len(list(generate(model, [], 3, seed=0, eos_id=256, stop_at_eos=False))) == 3
    with pytest.raises(ValueError, match="prompt is empty"):
        list(generate(model, [], 3))


def test_generation_puts_the_model_back_in_training_mode(model):
    model.train()
    list(generate(model, [1], 3, seed=0))
    assert model.training
    model.eval()


def test_utf8_guard_allows_only_tokens_that_can_continue_the_open_character():
    tok = ByteTokenizer()
    guard = Utf8Guard(tok)
    allowed = guard.allowed()
    assert allowed[ord("a")] and allowed[0xE7] and not allowed[0x8C] and not allowed[0xFF]  # 0x8C: stray byte
    guard.feed(0xE7)  # first byte of 猫 (E7 8C AB)
    allowed = guard.allowed()
    assert allowed[0x8C] and not allowed[ord("a")] and not allowed[256] and not allowed[0xE7]
    guard.feed(0x8C)
    guard.feed(0xAB)
    assert not guard.open_character and guard.allowed()[ord("a")]


def test_streamed_text_has_no_fffd_and_equals_the_returned_text(model):
    tok = ByteTokenizer()
    for seed in range(5):
        pieces = []
        text = generate_text(model, tok, "猫が", max_new_tokens=60, temperature=1.0, top_k=None, seed=seed,
                             stop_at_eos=False, stream=pieces.append)
        assert "\ufffd" not in text and "".join(pieces) == text and all(pieces)


def test_without_the_guard_a_random_model_does_print_fffd(model):
    # the guard is what prevents it: a byte-level model that was never trained draws invalid UTF-8
    texts = [generate_text(model, ByteTokenizer(), "猫が", max_new_tokens=60, temperature=1.0, top_k=None,
                           seed=s, stop_at_eos=False, valid_utf8=False) for s in range(5)]
    assert any("\ufffd" in t for t in texts)


def test_generate_text_is_reproducible_with_a_seed(model):
    tok = ByteTokenizer()
    a = generate_text(model, tok, "今日は", max_new_tokens=30, seed=4)
    b = generate_text(model, tok, "今日は", max_new_tokens=30, seed=4)
    assert a == b


def test_generate_text_with_gpt2_streams_whole_characters_only(model):
    from minigpt.tokenizer import load_tokenizer

    tok = load_tokenizer("gpt2")
    torch.manual_seed(0)
    gpt2_model = GPT(get_preset("tiny", vocab_size=tok.vocab_size))
    pieces = []
    text = generate_text(gpt2_model, tok, "駅前の喫茶店", max_new_tokens=40, temperature=1.0, top_k=None, seed=1,
                         stop_at_eos=False, stream=pieces.append)
    assert "\ufffd" not in text and "".join(pieces) == text


def test_zero_new_tokens_generates_nothing(model):
    streamed = []
    assert generate_text(model, ByteTokenizer(), "昔々", max_new_tokens=0, seed=0, stream=streamed.append) == ""
    assert streamed == [] and list(generate(model, [1, 2, 3], 0, seed=0)) == []


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), -0.5])
def test_a_temperature_that_is_not_a_finite_number_ge_0_is_a_config_error(model, temperature):
    from minigpt.errors import ConfigError

    with pytest.raises(ConfigError, match="temperature"):
        generate_text(model, ByteTokenizer(), "昔々", max_new_tokens=3, temperature=temperature)
