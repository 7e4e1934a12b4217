"""Tests of `pipelines.MaskedDiffusionPipeline` with tiny config-built models (no downloads)."""

from __future__ import annotations

import os

import pytest
import torch

from pipelines import (
    MaskedDiffusionPipeline,
    MaskedDiffusionPipelineOutput,
    MaskedDiffusionScheduler,
)

from _models import masked_diffusion_pipeline, minilm_tokenizer, tiny_bert

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = 32
PAD, MASK = 0, 4


@pytest.fixture(scope="module")
def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = SPECIALS + [f"w{i}" for i in range(VOCAB - len(SPECIALS))]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


@pytest.fixture(scope="module")
def model():
    return tiny_bert(VOCAB).eval()


@pytest.fixture
def pipe(model, tokenizer):
    return masked_diffusion_pipeline(model, tokenizer)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Boom(torch.nn.Module):
    """A model whose forward must never run (proves validation happens first)."""

    def __init__(self, vocab_size: int = VOCAB, max_position_embeddings: int | None = None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        config = {"vocab_size": vocab_size, "max_position_embeddings": max_position_embeddings}
        self.config = type("Config", (), config)()

    def forward(self, input_ids, attention_mask=None):
        raise RuntimeError("the model was called")


class TableModel(torch.nn.Module):
    """Plain module returning a logits tensor from an embedding table; records its inputs."""

    def __init__(self, vocab_size: int = VOCAB):
        super().__init__()
        torch.manual_seed(0)
        self.table = torch.nn.Embedding(vocab_size, vocab_size)
        self.calls: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def forward(self, input_ids, attention_mask=None):
        self.calls.append(
            (input_ids.clone(), None if attention_mask is None else attention_mask.clone())
        )
        return self.table(input_ids) + self.table(input_ids.roll(1, dims=1))


class BoostGuidance:
    """Guidance hook that adds a large bonus to one token id at editable positions."""

    def __init__(self, token: int, bonus: float = 1e4, revive_mask: bool = False):
        self.token, self.bonus, self.revive_mask = token, bonus, revive_mask
        self.calls: list[dict] = []
        self.resets = 0
        self.trace: list[dict] = []

    def reset(self):
        self.resets += 1
        self.trace = []

    def __call__(self, logits, sample, *, editable, step, num_steps, generator, attention_mask):
        assert not torch.is_grad_enabled()  # the pipeline runs under no_grad
        self.calls.append(
            dict(
                shape=tuple(logits.shape),
                editable=editable.clone(),
                sample=sample.clone(),
                step=step,
                num_steps=num_steps,
                generator=generator,
                attention_mask=attention_mask,
                mask_logit=logits[..., MASK].max().item(),
            )
        )
        out = logits.clone()
        out[..., self.token] += self.bonus * editable.float()
        if self.revive_mask:
            out[..., MASK] = 1e9
        self.trace.append({"step": step})
        return out

    def score(self, one_hot, attention_mask=None):
        return one_hot[..., self.token].sum(dim=-1)  # (B,) how many times the token occurs


# ---------------------------------------------------------------------------------- generation


def test_prompts_of_mixed_lengths_left_padded(pipe, tokenizer):
    prompts = ["w1 w2 w3", "w4"]
    out = pipe(prompt=prompts, length=6, num_samples=3, num_inference_steps=4, generator=seeded())
    assert isinstance(out, MaskedDiffusionPipelineOutput)
    seq = out.sequences
    assert seq.shape == (6, 3 + 6) and seq.dtype == torch.long
    assert not bool((seq == MASK).any())
    p0, p1 = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    for r in range(3):  # repeat_interleave: rows 0-2 prompt 0, rows 3-5 prompt 1
        assert seq[r, :3].tolist() == p0
        assert seq[3 + r, :2].tolist() == [PAD, PAD] and seq[3 + r, 2].tolist() == p1[0]
    assert len(out.texts) == 6
    assert all(len(text.split()) <= 6 for text in out.texts)  # only the generated part
    decoded = tokenizer.decode(seq[0, 3:].tolist(), skip_special_tokens=True)
    assert out.texts[0] == decoded


def test_infill_constants_survive_and_masks_fill(pipe):
    ids = torch.tensor([[MASK, 7, MASK, MASK, 9, MASK], [5, MASK, 6, MASK, MASK, 8]])
    out = pipe(input_ids=ids, num_inference_steps=3, generator=seeded(), output_type="ids")
    keep = ids != MASK
    assert torch.equal(out.sequences[keep], ids[keep])
    assert not bool((out.sequences == MASK).any())
    assert out.texts is None
    # infill inside a prompt string, plus appended tokens
    out = pipe(prompt="w1 [MASK] w3", length=2, num_inference_steps=3, generator=seeded())
    assert out.sequences.shape == (1, 5) and not bool((out.sequences == MASK).any())
    assert out.sequences[0, [0, 2]].tolist() == [6, 8]


def test_ragged_input_id_lists_and_attention_mask_reach_the_model(tokenizer):
    table = TableModel()
    pipe = masked_diffusion_pipeline(table, tokenizer)  # plain module returning a tensor
    out = pipe(input_ids=[[6, 7, 8], [9]], length=4, num_inference_steps=2, generator=seeded())
    assert out.sequences.shape == (2, 7)
    assert out.sequences[1, :3].tolist() == [PAD, PAD, 9]
    assert not bool((out.sequences == MASK).any())
    assert len(table.calls) == 2
    _, am = table.calls[0]
    assert am.tolist() == [[1] * 7, [0, 0] + [1] * 5]


def test_tensor_input_ids_with_attention_mask_and_fixed_mask(pipe):
    ids = torch.tensor([[PAD, 6, 7, MASK], [8, 9, MASK, MASK]])
    am = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    fixed = torch.tensor([[True, True, False, False], [True, True, False, False]])
    # position (0, 2) is a non-fixed token: with remasking it may be revised, pads never change
    pipe.scheduler = MaskedDiffusionScheduler.from_config(pipe.scheduler.config, remask=1.0)
    out = pipe(
        input_ids=ids,
        attention_mask=am,
        fixed_mask=fixed,
        length=2,
        num_inference_steps=4,
        generator=seeded(),
        output_type="ids",
    )
    assert out.sequences.shape == (2, 6)
    assert torch.equal(out.sequences[:, :2], ids[:, :2])
    assert not bool((out.sequences == MASK).any())


def test_padding_is_fixed_even_when_it_holds_the_mask_id(pipe):
    ids = torch.tensor([[MASK, MASK, 6, MASK]])
    am = torch.tensor([[0, 0, 1, 1]])
    out = pipe(
        input_ids=ids,
        attention_mask=am,
        num_inference_steps=2,
        generator=seeded(),
        output_type="ids",
    )
    assert out.sequences[0, :3].tolist() == [MASK, MASK, 6]
    assert out.sequences[0, 3].item() != MASK


@pytest.mark.parametrize(
    "unmasking, remask",
    [("random", "none"), ("confidence", "none"), ("confidence", "cap"), ("random", 1.0)],
)
def test_every_scheduler_mode_finishes(model, tokenizer, unmasking, remask):
    pipe = masked_diffusion_pipeline(
        model, tokenizer, unmasking=unmasking, remask=remask, remask_eta=0.5
    )
    out = pipe(prompt=["w1 w2", "w3"], length=8, num_inference_steps=5, generator=seeded())
    assert not bool((out.sequences == MASK).any())
    assert out.sequences[0, :2].tolist() == [6, 7] and out.sequences[1, :2].tolist() == [PAD, 8]


def test_seeded_determinism(pipe):
    kwargs = dict(prompt=["w1", "w2 w3"], length=8, num_samples=2, num_inference_steps=4)
    a = pipe(**kwargs, generator=seeded(0)).sequences
    b = pipe(**kwargs, generator=seeded(0)).sequences
    c = pipe(**kwargs, generator=seeded(1)).sequences
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_return_tuple(pipe):
    seq, texts, rewards, trace = pipe(
        prompt="w1", length=3, num_inference_steps=2, generator=seeded(), return_dict=False
    )
    assert seq.shape == (1, 4) and len(texts) == 1 and rewards is None and trace is None


def test_add_special_tokens(pipe, tokenizer):
    from tokenizers import processors

    tok = tokenizer  # WordLevel has no post-processor; give it BERT's template for this test
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    try:
        out = pipe(
            prompt="w1",
            length=2,
            num_inference_steps=2,
            generator=seeded(),
            add_special_tokens=True,
        )
        assert out.sequences[0, :3].tolist() == [2, 6, 3]
    finally:
        tok.backend_tokenizer.post_processor = None


# ------------------------------------------------------------------------- callback / guidance


def test_callback_receives_tensors_and_can_replace_sample(pipe):
    seen = []

    def callback(p, step, timestep, kwargs):
        seen.append((step, float(timestep), {k: v.clone() for k, v in kwargs.items()}))
        if step == 0:
            sample = kwargs["sample"].clone()
            sample[:, -1] = 11  # commit a token of our own; nothing may undo it (no remasking)
            return {"sample": sample}
        return {}

    out = pipe(
        prompt="w1 w2",
        length=5,
        num_inference_steps=4,
        generator=seeded(),
        callback_on_step_end=callback,
        callback_on_step_end_tensor_inputs=["sample", "logits", "pred_original_sample"],
    )
    assert [s for s, _, _ in seen] == [0, 1, 2, 3]
    assert [t for _, t, _ in seen] == [1.0, 0.75, 0.5, 0.25]
    _, _, first = seen[0]
    assert first["sample"].shape == (1, 7) and first["sample"].dtype == torch.long
    assert first["logits"].shape == (1, 7, VOCAB) and first["logits"].dtype == torch.float32
    assert first["pred_original_sample"].shape == (1, 7)
    assert bool((first["logits"][..., MASK] == torch.finfo(torch.float32).min).all())
    assert out.sequences[0, -1].item() == 11


def test_guidance_is_obeyed_reset_trace_and_rewards(pipe):
    guidance = BoostGuidance(token=13)
    guidance.trace = [{"stale": True}]
    out = pipe(
        prompt=["w1 w2", "w3"],
        length=6,
        num_inference_steps=3,
        guidance=guidance,
        generator=seeded(),
    )
    assert guidance.resets == 1
    generated = out.sequences[:, -6:]
    assert bool((generated == 13).all())  # the guided logits are what the scheduler used
    assert out.sequences[0, :2].tolist() == [6, 7]  # the prompt is not editable
    calls = guidance.calls
    assert [c["step"] for c in calls] == [0, 1, 2] and all(c["num_steps"] == 3 for c in calls)
    assert all(c["shape"] == (2, 8, VOCAB) for c in calls)
    assert calls[0]["generator"] is not None
    assert calls[0]["attention_mask"].tolist() == [[1] * 8, [0] + [1] * 7]
    assert calls[0]["mask_logit"] == torch.finfo(torch.float32).min
    assert torch.equal(calls[0]["editable"], calls[0]["sample"] == MASK)
    assert not bool(calls[0]["editable"][:, :2].any())
    assert out.trace == [{"step": 0}, {"step": 1}, {"step": 2}] and out.trace is not guidance.trace
    assert torch.equal(out.rewards, torch.tensor([6.0, 6.0]))


def test_guidance_cannot_revive_the_mask_token(pipe):
    out = pipe(
        prompt="w1",
        length=6,
        num_inference_steps=3,
        guidance=BoostGuidance(13, bonus=0.0, revive_mask=True),
        generator=seeded(),
    )
    assert not bool((out.sequences == MASK).any())


def test_progress_bar_can_be_disabled(model, tokenizer, capsys):
    pipe = MaskedDiffusionPipeline.from_model(model, tokenizer)
    pipe(prompt="w1", length=2, num_inference_steps=3, generator=seeded())
    assert "3/3" in capsys.readouterr().err
    pipe.set_progress_bar_config(disable=True)
    pipe(prompt="w1", length=2, num_inference_steps=3, generator=seeded())
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------------- devices


def test_model_cpu_offload_installs_hooks_and_keeps_the_generation(model, tokenizer):
    """`enable_model_cpu_offload` (accelerate's hooks; here with the CPU as the execution device)
    runs the model through its hook and gives the plain run's sequences bit for bit."""
    pytest.importorskip("accelerate")
    kwargs = dict(prompt=["w1 w2", "w3"], length=5, num_inference_steps=4, output_type="ids")
    plain = masked_diffusion_pipeline(model, tokenizer)
    expected = plain(**kwargs, generator=seeded(5)).sequences

    offloaded = masked_diffusion_pipeline(tiny_bert(VOCAB).eval(), tokenizer)
    offloaded.enable_model_cpu_offload(device="cpu")
    assert len(offloaded._all_hooks) == 1 and hasattr(offloaded.model, "_hf_hook")
    # the device comes from the hook (execution device "cpu:0"), not from the parameters
    assert offloaded._execution_device == torch.device("cpu", 0)
    out = offloaded(**kwargs, generator=seeded(5)).sequences
    assert torch.equal(out, expected)
    assert hasattr(offloaded.model, "_hf_hook")  # `maybe_free_model_hooks` re-armed the hook
    offloaded.remove_all_hooks()


def test_suppress_mask_token_in_place_or_copy_everywhere_or_where():
    from pipelines import suppress_mask_token

    logits = torch.randn(2, 3, 6, generator=seeded())
    low = torch.finfo(logits.dtype).min
    out = suppress_mask_token(logits, 4)
    assert out is not logits and bool((out[..., 4] == low).all())
    assert torch.equal(out[..., :4], logits[..., :4]) and not bool((logits[..., 4] == low).any())
    where = torch.tensor([[True, False, True], [False, False, True]])
    partial = suppress_mask_token(logits.bfloat16(), 0, where=where)
    assert torch.equal(partial[..., 0] == torch.finfo(torch.bfloat16).min, where)
    same = suppress_mask_token(logits, 5, inplace=True)
    assert same is logits and bool((logits[..., 5] == low).all())
    with pytest.raises(ValueError, match="`mask_token_id` is 6 but the logits have only 6"):
        suppress_mask_token(logits, 6)


# ---------------------------------------------------------------------------------- save / load


def test_save_and_from_pretrained_round_trip(pipe, tmp_path):
    pipe.scheduler = MaskedDiffusionScheduler.from_config(
        pipe.scheduler.config, unmasking="confidence"
    )
    pipe.save_pretrained(tmp_path)
    assert os.path.isfile(tmp_path / "model" / "model.safetensors")
    loaded = MaskedDiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.scheduler, MaskedDiffusionScheduler)
    assert loaded.scheduler.config.unmasking == "confidence"
    assert loaded.tokenizer.mask_token_id == MASK
    kwargs = dict(prompt=["w1 w2", "w3"], length=5, num_samples=2, num_inference_steps=4)
    a = pipe(**kwargs, generator=seeded(3))
    b = loaded(**kwargs, generator=seeded(3))
    assert torch.equal(a.sequences, b.sequences) and a.texts == b.texts


# ---------------------------------------------------------------------------------- bad inputs


@pytest.fixture
def boom_pipe(tokenizer):
    pipe = masked_diffusion_pipeline(Boom(), tokenizer)
    return pipe


class RewardWithVocab:
    def __init__(self, vocab_size):
        self.reward = type("Reward", (), {"vocab_size": vocab_size})()

    def __call__(self, logits, sample, **kwargs):
        return logits


IDS = torch.tensor([[6, MASK, 7]])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(prompt="w1", length=2, num_inference_steps=0), "`num_inference_steps`.*got 0"),
        (dict(length=2), "Neither `prompt` nor `input_ids`"),
        (dict(prompt="w1", input_ids=IDS), "Both `prompt` and `input_ids`"),
        (dict(prompt="w1", length=2, num_samples=0), "`num_samples`.*got 0"),
        (dict(prompt="w1", length=2, guidance="boost"), "`guidance` must be callable"),
        (dict(prompt="w1"), "`length` is None"),
        (dict(prompt="w1", length=0), "`length` is 0"),
        (dict(input_ids=torch.tensor([[6, 7]])), "`length` is None"),
        (dict(prompt="w1", length=-1), "`length`.*got -1"),
        (dict(prompt="w1", length=2, output_type="pil"), "`output_type`.*'pil'"),
        (dict(prompt="w1", length=2, callback_on_step_end_tensor_inputs=["latents"]), "latents"),
        (dict(prompt="w1", length=2, guidance=RewardWithVocab(30522)), "30522"),
        (
            dict(input_ids=IDS, attention_mask=torch.ones(1, 4, dtype=torch.long)),
            "`attention_mask`",
        ),
        (dict(input_ids=IDS, fixed_mask=torch.ones(1, 3, dtype=torch.bool)), "`fixed_mask` marks"),
        (dict(input_ids=IDS.float()), "`input_ids`.*torch.float32"),
        (dict(prompt=["w1", 3], length=2), "`prompt`"),
    ],
)
def test_bad_inputs_raise_before_the_model_runs(boom_pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        boom_pipe(**kwargs)


def test_reward_vocabulary_goes_through_the_shared_check(boom_pipe, monkeypatch):
    rewards = pytest.importorskip("rewards")
    calls = []

    def check_vocab_size(reward, vocab_size, *, what="the logits"):
        calls.append((reward, vocab_size, what))
        raise ValueError("shared check ran")

    monkeypatch.setattr(rewards, "check_vocab_size", check_vocab_size, raising=False)
    guidance = RewardWithVocab(VOCAB)
    with pytest.raises(ValueError, match="shared check ran"):
        boom_pipe(prompt="w1", length=2, guidance=guidance)
    assert calls == [(guidance.reward, VOCAB, "the model's logits")]


def test_missing_pieces_raise_before_the_model_runs(tokenizer):
    no_mask = MaskedDiffusionPipeline(model=Boom(), scheduler=MaskedDiffusionScheduler())
    with pytest.raises(ValueError, match="No mask token id"):
        no_mask(input_ids=IDS)
    no_tok = MaskedDiffusionPipeline.from_model(Boom(), mask_token_id=MASK)
    with pytest.raises(ValueError, match="no tokenizer"):
        no_tok(prompt="w1", length=2)
    with pytest.raises(ValueError, match="different lengths.*pad"):
        no_tok(input_ids=[[6, 7], [8]], length=2)
    big_mask = MaskedDiffusionPipeline.from_model(Boom(vocab_size=4), mask_token_id=MASK)
    with pytest.raises(ValueError, match="`mask_token_id` is 4"):
        big_mask(input_ids=IDS)


def test_length_beyond_the_models_positions_raises_before_the_model_runs(tokenizer):
    pipe = masked_diffusion_pipeline(Boom(max_position_embeddings=8), tokenizer)
    # the longest prompt counts: 3 tokens + 6 new > 8 positions; the message gives the fix
    with pytest.raises(
        ValueError,
        match=r"`length` 6 plus the longest prompt \(3 tokens\) "
        r"exceeds the model's 8 positions; use `length=5`",
    ):
        pipe(prompt=["w1 w2 w3", "w4"], length=6)
    with pytest.raises(ValueError, match=r"\(4 tokens\).*8 positions; use `length=4`"):
        pipe(input_ids=[[6, 7, 8, 9], [9]], length=5)
    with pytest.raises(ValueError, match=r"`length` 0 plus the longest prompt \(9 tokens\)"):
        pipe(input_ids=torch.full((1, 9), MASK))
    # exactly the model's positions is fine: the check passes and the model is called
    with pytest.raises(RuntimeError, match="the model was called"):
        pipe(prompt=["w1 w2 w3", "w4"], length=5)
    with pytest.raises(RuntimeError, match="the model was called"):
        pipe(input_ids=IDS, length=5)


def test_from_model_validates(model, tokenizer):
    with pytest.raises(ValueError, match="Unknown scheduler option.*steps"):
        MaskedDiffusionPipeline.from_model(model, tokenizer, steps=3)
    with pytest.raises(ValueError, match="`mask_token_id` is None"):
        MaskedDiffusionPipeline.from_model(model)
    pipe = MaskedDiffusionPipeline.from_model(model, mask_token_id=7, schedule="cosine")
    assert pipe.scheduler.config.mask_token_id == 7 and pipe.scheduler.config.schedule == "cosine"


@pytest.mark.integration
def test_real_bert_tokenizer_infill():
    tok = minilm_tokenizer()
    model = tiny_bert(tok.vocab_size).eval()
    pipe = masked_diffusion_pipeline(model, tok)
    out = pipe(
        prompt="the weather is [MASK] today", length=3, num_inference_steps=3, generator=seeded()
    )
    ids = out.sequences[0]
    assert not bool((ids == tok.mask_token_id).any())
    assert tok.decode(ids[:3]) == "the weather is" and tok.decode(ids[4:5]) == "today"
    assert out.texts[0].endswith(tok.decode(ids[-3:]))
