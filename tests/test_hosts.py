"""Guidance with models placed by accelerate (``device_map``, ``dispatch_model``, ``cpu_offload``),
a reward whose weights are not where it computes, and bfloat16 models.

This machine has no accelerator, so every placement here executes on the CPU; what the tests pin
is that the code paths that read devices (the pipeline's execution device, the hook's move of the
reward's input) follow accelerate's hooks rather than the parameters, which such hooks leave on
``meta`` until a forward call."""

from __future__ import annotations

import pytest
import torch

from redge_guidance import RewardGuidance, attach
from redge_guidance.guidance._checks import module_device
from rewards import Reward, TokenSetReward

from _models import llada2_pipeline, masked_diffusion_pipeline, minilm_tokenizer, tiny_bert

accelerate = pytest.importorskip("accelerate")

V = 32  # vocabulary
MASK = 3  # mask token id
TARGET = 7  # the token the reward favours
CPU = torch.device("cpu")


def tiny_modernbert():
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    torch.manual_seed(0)
    config = ModernBertConfig(
        vocab_size=V,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        cls_token_id=1,
        sep_token_id=2,
        mask_token_id=MASK,
        max_position_embeddings=64,
        global_attn_every_n_layers=1,
        local_attention=16,
    )
    return ModernBertForMaskedLM(config).eval()


class RecordingReward(Reward):
    """A linear reward through a Linear layer; remembers the device and dtype of its inputs."""

    vocab_size = V

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.head = torch.nn.Linear(V, 1)
        self.seen: list[tuple[torch.device, torch.dtype]] = []

    def forward(self, x, *, attention_mask=None):
        self.seen.append((x.device, x.dtype))
        return self.head(x.float()).squeeze(-1).sum(-1)


def _generate(model, guidance, steps=4):
    pipe = masked_diffusion_pipeline(model, mask_token_id=MASK)
    ids = torch.full((4, 12), MASK, dtype=torch.long)
    ids[:, :2] = 10
    out = pipe(
        input_ids=ids,
        num_inference_steps=steps,
        guidance=guidance,
        generator=torch.Generator().manual_seed(0),
        output_type="ids",
    )
    return out.sequences


def _guidance(**options):
    options = {"n_opt_steps": 5, "lr": 0.5, "kl_weight": 0.1, **options}
    return RewardGuidance(TokenSetReward([TARGET], vocab_size=V), mask_token_id=MASK, **options)


def _device_map_auto(tmp_path):
    from transformers import AutoModelForMaskedLM

    tiny_bert(V).eval().save_pretrained(tmp_path)
    return AutoModelForMaskedLM.from_pretrained(tmp_path, device_map="auto")


PLACEMENTS = {
    "cpu_offload": lambda tmp: accelerate.cpu_offload(tiny_bert(V).eval(), execution_device=CPU),
    "dispatch_model": lambda tmp: accelerate.dispatch_model(
        tiny_bert(V).eval(), device_map={"": "cpu"}
    ),
    "device_map_auto": _device_map_auto,
}


@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_guided_generation_with_an_accelerate_placed_denoiser_is_the_plain_one(placement, tmp_path):
    """Same seed, same guided sequences and trace as the model without hooks (cpu_offload
    leaves the weights on ``meta`` between calls)."""
    expected = _generate(tiny_bert(V).eval(), plain := _guidance())
    placed = PLACEMENTS[placement](tmp_path)
    if placement == "cpu_offload":
        assert {p.device.type for p in placed.parameters()} == {"meta"}
    out = _generate(placed, hook := _guidance())
    assert torch.equal(out, expected)
    assert [e["reward_after"] for e in hook.trace] == [e["reward_after"] for e in plain.trace]


@pytest.mark.parametrize("placement", ["cpu_offload", "dispatch_model"])
def test_the_reward_runs_on_its_execution_device_and_scores_come_back(placement):
    """The hook sends the reward's input to the device the reward computes on: for a module with
    accelerate hooks, the hooks' execution device, not its parameters' (on ``meta`` under
    cpu_offload, where moving the input there would fail); scores and gradients come back to
    the logits' device."""
    reward = RecordingReward()
    if placement == "cpu_offload":
        reward = accelerate.cpu_offload(reward, execution_device=CPU)
        assert next(reward.parameters()).device.type == "meta"
    else:
        reward = accelerate.dispatch_model(reward, device_map={"": "cpu"})
    assert module_device(reward) == CPU
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, V, generator=g)
    logits[..., MASK] = torch.finfo(torch.float32).min
    sample = torch.full((2, 6), MASK, dtype=torch.long)
    sample[:, 0] = 5
    hook = RewardGuidance(reward, n_opt_steps=8, lr=1.0, kl_weight=0.0, mask_token_id=MASK)
    out = hook(logits, sample, editable=sample == MASK, step=0, num_steps=2, generator=g)
    assert out.device == logits.device and torch.isfinite(out[..., MASK + 1 :]).all()
    assert {d for d, _ in reward.seen} == {CPU}
    assert hook.trace[-1]["reward_after"] > hook.trace[-1]["reward_before"]


def tiny_classifier():
    return tiny_bert(V, head="classifier", seed=1, num_labels=1).eval()


@pytest.mark.parametrize("sub_vocab", [False, True])
def test_embedding_reward_over_an_offloaded_model_is_the_plain_one(sub_vocab):
    """An embedding-input reward reads `get_input_embeddings().weight` for `x @ W`; under
    `cpu_offload` that weight is on ``meta`` between calls. The reward loads it through the
    embedding's accelerate hook: same scores and gradients, dense and sparse, as without hooks."""
    from rewards import SequenceClassifierReward, SparseRows

    ids = list(range(4, V)) if sub_vocab else None
    plain = SequenceClassifierReward(tiny_classifier(), label=0, score="logit", sub_vocab_ids=ids)
    offloaded_model = accelerate.cpu_offload(tiny_classifier(), execution_device=CPU)
    assert next(offloaded_model.parameters()).device.type == "meta"
    offloaded = SequenceClassifierReward(offloaded_model, label=0, score="logit", sub_vocab_ids=ids)
    width = plain.vocab_size
    g = torch.Generator().manual_seed(0)
    x = torch.softmax(torch.randn(2, 5, width, generator=g), -1).requires_grad_(True)
    y = x.detach().clone().requires_grad_(True)
    a, b = plain(x), offloaded(y)
    torch.testing.assert_close(b, a)
    a.sum().backward()
    b.sum().backward()
    torch.testing.assert_close(y.grad, x.grad)

    top = x.detach().topk(3, dim=-1)
    rows = SparseRows(top.indices, top.values / top.values.sum(-1, keepdim=True), width)
    torch.testing.assert_close(offloaded(rows), plain(rows))
    assert next(offloaded_model.parameters()).device.type == "meta"  # offloaded again after


def test_module_device_reads_hooks_then_parameters():
    assert module_device(lambda x: x) is None
    assert module_device(torch.nn.Linear(2, 2)) == CPU
    assert module_device(torch.nn.Linear(2, 2, device="meta")) is None  # nothing runs on meta
    offloaded = accelerate.cpu_offload(torch.nn.Sequential(torch.nn.Linear(2, 2)), CPU)
    assert next(offloaded.parameters()).device.type == "meta"
    assert module_device(offloaded) == CPU  # the hooks' execution device


@pytest.mark.parametrize("mixed_precision", ["no", "bf16"])
def test_bf16_modernbert_is_guided(mixed_precision):
    """A bfloat16 ModernBERT: the pipeline upcasts its logits, guidance runs (in bf16 with mixed
    precision), every step raises the reward and the target token takes over (measured: 5/48
    unguided, 31/48 guided at these settings)."""
    model = tiny_modernbert().to(torch.bfloat16)
    unguided = _generate(model, None)
    hook = _guidance(mixed_precision=mixed_precision)
    guided = _generate(model, hook)
    assert (unguided == TARGET).sum() <= 6 and (guided == TARGET).sum() >= 20
    assert all(e["reward_after"] >= e["reward_before"] for e in hook.trace if e["guided"])


@pytest.mark.parametrize("placement", ["bf16", "bf16+cpu_offload"])
def test_llada2_pipeline_with_a_bf16_or_offloaded_model(placement):
    """LLaDA2Pipeline through `attach`: the hook gets the model's bf16 logits (optimised in
    float32, handed back in bf16) and the guided tokens take over as with a float32 model."""
    tok = minilm_tokenizer()
    model = tiny_bert(len(tok), dtype=torch.bfloat16).eval()
    if "cpu_offload" in placement:
        model = accelerate.cpu_offload(model, execution_device=CPU)
    pipe = llada2_pipeline(model, tok, block_length=8)
    happy = tok.convert_tokens_to_ids("happy")
    dtypes = []
    hook = RewardGuidance(
        TokenSetReward([happy], vocab_size=len(tok)),
        n_opt_steps=5,
        lr=2.0,
        kl_weight=0.0,
        mixed_precision="bf16",
        callback=lambda entry: dtypes.append(entry["guided"]),
    )

    def spy(logits, sample, **kw):
        out = hook(logits, sample, **kw)
        assert logits.dtype == out.dtype == torch.bfloat16 and torch.isfinite(out).any(-1).all()
        return out

    spy.reset = hook.reset
    attach(pipe, spy)
    out = pipe(
        prompt="hello world",
        gen_length=16,
        block_length=8,
        num_inference_steps=4,
        output_type="seq",
        generator=torch.Generator().manual_seed(0),
    ).sequences
    # measured: 0/16 unguided (greedy), 16/16 guided, as with the float32 model
    assert (out == happy).sum() >= 12 and dtypes and all(dtypes)
