"""The rows of `redge-guidance generate --search METHOD`: one search call per batch.

Batch `k` (its `(prompt_id, sample_id)` pairs, one prompt row each) is one call of
:func:`redge_guidance.search.search` with the batch's seed, so a row depends only on `--seed`,
`--batch-size`, its batch and the search settings, as without a search. A sample's row is the
search's pick (with `--keep-particles`: one row per particle or candidate). `--compare` runs the
same search on the same batch with the same seed and no guidance.

Each row records the method and its config (`search`), the budget, the pick's normalised weight
(SMC), the prompt's ESS history and resampling steps (SMC), the rewards after each round
(refinement), and `spent`: this row's share of the batch's compute (the batch's totals divided
by the rows it wrote, like `seconds`), so summing `spent` over a file gives the run's total.
"""

from __future__ import annotations

from typing import Any

from .load import Models, encode_batch
from .plan import GeneratePlan

__all__ = ["search_rows"]


def _run(plan: GeneratePlan, m: Models, ids: Any, am: Any, seed: int, guided: bool):
    """One search over the batch; the guided one uses the run's guidance (if it guides)."""
    import torch

    from ..search import search

    args, settings = plan.args, plan.search
    assert settings is not None
    guidance = plan.config if guided and plan.config.n_opt_steps > 0 else None
    return search(
        m.pipe,
        m.reward,
        ids,
        settings.config,
        guidance=guidance,
        attention_mask=am,
        num_inference_steps=args.steps,
        budget=settings.budget,
        generator=torch.Generator("cpu").manual_seed(seed),
    )


def _share(spent: Any, n: int) -> dict[str, float | int]:
    """Each quantity of `spent` divided by the `n` rows of the batch."""
    out: dict[str, float | int] = {}
    for key, value in spent.to_dict().items():
        q = value / n
        if key.endswith("seconds"):
            out[key] = round(q, 4)
        else:
            out[key] = int(q) if q == int(q) else round(q, 3)
    return out


def _terms(m: Models, seqs: Any, am: Any) -> list[dict[str, float]] | None:
    """Each reward term of each sequence (R, L), with several `--reward`; else None."""
    import torch
    import torch.nn.functional as F

    if len(m.parts) <= 1:
        return None
    with torch.no_grad():
        x = F.one_hot(seqs.to(m.device), m.tm.vocab_size).float()
        am = am.to(m.device)
        values = {k: p(x, attention_mask=am).float().cpu() for k, p in m.parts.items()}
    return [{k: round(float(v[i]), 6) for k, v in values.items()} for i in range(seqs.shape[0])]


def _prompt_fields(res: Any, b: int) -> dict[str, Any]:
    """What the search recorded for prompt row `b`, beside the sequence."""
    out: dict[str, Any] = {}
    if res.ess_history is not None:
        out["ess_history"] = [round(float(v), 4) for v in res.ess_history[:, b]]
        out["resampled_at"] = res.resampled[:, b].nonzero().flatten().tolist()
        out["log_evidence"] = round(float(res.log_evidence[b]), 6)
    if res.round_rewards is not None:
        out["round_rewards"] = [round(float(v), 6) for v in res.round_rewards[:, b]]
    out["budget_exhausted"] = bool(res.budget_exhausted)
    return out


def _picks(res: Any, keep: bool) -> list[list[tuple[int | None, Any, float, float | None]]]:
    """Per prompt row, the `(particle, ids, reward, weight)` of each row to write."""
    B = res.sequences.shape[0]
    out = []
    for b in range(B):
        if keep:
            K = res.particles.shape[1]
            out.append(
                [
                    (
                        j,
                        res.particles[b, j],
                        float(res.particle_rewards[b, j]),
                        None if res.weights is None else float(res.weights[b, j]),
                    )
                    for j in range(K)
                ]
            )
            continue
        weight = None
        if res.weights is not None and res.picked is not None:
            weight = float(res.weights[b, res.picked[b]])
        out.append([(None, res.sequences[b], float(res.rewards[b]), weight)])
    return out


def search_rows(
    plan: GeneratePlan, m: Models, k: int, keys: list[tuple[int, int]]
) -> list[dict[str, Any]]:
    """The rows of batch `k` under `--search` (see the module docstring)."""
    import torch

    settings = plan.search
    assert settings is not None
    tok = m.tm.tokenizer
    ids, am, width = encode_batch(plan, m, keys)  # (B, width + L)
    seed = plan.job.seed(plan.args.seed, k)
    unguided = _run(plan, m, ids, am, seed, guided=False) if plan.args.compare else None
    res = _run(plan, m, ids, am, seed, guided=True)
    picks = _picks(res, settings.keep_particles)
    n_rows = sum(len(p) for p in picks)
    seqs = torch.stack([s.cpu() for p in picks for _, s, _, _ in p])  # (n_rows, width + L)
    row_am = torch.cat([am[b : b + 1].expand(len(p), -1) for b, p in enumerate(picks)])
    terms = _terms(m, seqs, row_am)
    unguided_terms = None
    if unguided is not None:
        unguided_terms = _terms(m, unguided.sequences.cpu(), am)

    def decode(row: Any) -> str:
        return tok.decode(row.tolist(), skip_special_tokens=True).strip()

    spent = _share(res.spent, n_rows)
    rows, i = [], 0
    for b, (pid, sid) in enumerate(keys):
        for particle, seq, reward, weight in picks[b]:
            gen_ids = seq[width:].cpu()
            row: dict[str, Any] = {"prompt_id": pid, "sample_id": sid}
            if particle is not None:
                row["particle"] = particle
            row.update(
                {
                    "prompt": plan.prompts[pid],
                    "text": decode(gen_ids),
                    "token_ids": gen_ids.tolist(),
                    "reward": round(reward, 6),
                    "reward_unguided": None,
                    "kl": None,  # a search does not measure the guidance's KL
                    "seconds": spent["wall_seconds"],
                }
            )
            if terms is not None:
                row["reward_terms"] = terms[i]
            if unguided is not None:
                row["reward_unguided"] = round(float(unguided.rewards[b]), 6)
                row["text_unguided"] = decode(unguided.sequences[b, width:].cpu())
                row["token_ids_unguided"] = unguided.sequences[b, width:].cpu().tolist()
                row["seconds_unguided"] = round(unguided.spent.wall_seconds / len(keys), 4)
                if unguided_terms is not None:
                    row["reward_terms_unguided"] = unguided_terms[b]
            row["search"] = res.config
            row["budget"] = None if settings.budget is None else settings.budget.to_dict()
            if weight is not None:
                row["weight"] = round(weight, 6)
            if particle is not None and res.picked is not None:
                row["picked"] = particle == int(res.picked[b])
            row.update(_prompt_fields(res, b))
            row["spent"] = spent
            if unguided is not None:
                row["spent_unguided"] = _share(unguided.spent, len(keys))
            row.update(
                {"seed": seed, "config_hash": plan.config.config_hash(), "run_hash": plan.run_hash}
            )
            rows.append(row)
            i += 1
    return rows
