"""`MaskedDiffusionPipeline`: text generation and infilling with a masked diffusion denoiser.

The denoiser is any model that maps `input_ids` (and optionally `attention_mask`) to clean-token
logits `(B, L, V)`: a transformers `AutoModelForMaskedLM`, an MDLM-style network, or a plain
`nn.Module` returning a tensor. A guidance callable (see docs/architecture.md, "Guidance hook
protocol") may rewrite the logits between the model call and the scheduler step.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput, logging

from ._checks import (
    check_callback_tensor_inputs,
    check_choice,
    check_generator,
    check_guidance_callable,
    check_guidance_mask_id,
    check_id_masks,
    check_ids_in_vocab,
    check_length,
    check_positive_int,
    check_prompt_or_ids,
    check_reward_vocab,
    check_something_to_generate,
)
from ._denoising import (
    Generation,
    callback_tensor_inputs,
    guidance_results,
    guided_logits,
    step_end_callback,
)
from ._model_io import (
    append_masks,
    config_int,
    decode_texts,
    forward_kwargs,
    left_pad,
    model_logits,
    pad_token_id,
)
from .sampling import suppress_mask_token
from .scheduling_masked_diffusion import MaskedDiffusionScheduler

logger = logging.get_logger(__name__)

__all__ = ["MaskedDiffusionPipeline", "MaskedDiffusionPipelineOutput"]

_OUTPUT_TYPES = ("text", "ids")


@dataclass
class MaskedDiffusionPipelineOutput(BaseOutput):
    """
    Output of [`MaskedDiffusionPipeline`].

    Args:
        sequences (`torch.LongTensor` of shape `(B, L)`):
            Full sequences (left padding, prompt or constants, generated tokens); `B` is the number
            of prompts times `num_samples`.
        texts (`list[str]`, *optional*):
            Per row, the decoded text from the first generated position to the end (prompt
            continuation: the new tokens only), special tokens skipped. `None` unless
            `output_type="text"` and the pipeline has a tokenizer.
        rewards (`torch.Tensor` of shape `(B,)`, *optional*):
            `guidance.score` of the final sequences, when the guidance has a `score` method.
        trace (`list`, *optional*):
            A copy of `guidance.trace` after the run, when the guidance has one.
    """

    sequences: torch.LongTensor
    texts: list[str] | None = None
    rewards: torch.Tensor | None = None
    trace: list | None = None


class MaskedDiffusionPipeline(DiffusionPipeline):
    r"""
    Generation with a masked diffusion model: start from mask tokens, let the scheduler commit
    tokens proposed by the denoiser, step by step, with optional reward guidance on the logits.

    Args:
        model (`torch.nn.Module`):
            Denoiser: `model(input_ids=..., attention_mask=...)` returns an object with
            `.logits` or a logits tensor of shape `(B, L, V)`. `attention_mask` is passed only if
            `forward` accepts it (`input_ids` goes by position if `forward` has no such name).
        scheduler ([`MaskedDiffusionScheduler`]):
            The reverse-process scheduler.
        tokenizer (`transformers.PreTrainedTokenizerBase`, *optional*):
            Needed for `prompt=` and for `output_type="text"`; its `mask_token_id` is used when the
            scheduler has none, its `pad_token_id` pads prompts of different lengths (on the left).
    """

    model: Any
    scheduler: MaskedDiffusionScheduler
    tokenizer: Any

    # `enable_model_cpu_offload()`: the one model on the accelerator while it runs
    model_cpu_offload_seq = "model"
    _optional_components = ["tokenizer"]
    _callback_tensor_inputs = ["sample", "logits", "pred_original_sample"]

    def __init__(
        self, model: Any, scheduler: MaskedDiffusionScheduler, tokenizer: Any | None = None
    ):
        super().__init__()
        self.register_modules(model=model, scheduler=scheduler, tokenizer=tokenizer)

    @classmethod
    def from_model(
        cls,
        model: Any,
        tokenizer: Any | None = None,
        *,
        mask_token_id: int | None = None,
        **scheduler_kwargs,
    ) -> MaskedDiffusionPipeline:
        """
        Build a pipeline around `model` with a [`MaskedDiffusionScheduler`] that knows its mask id.

        Args:
            model (`torch.nn.Module`): the denoiser.
            tokenizer (*optional*): its tokenizer.
            mask_token_id (`int`, *optional*): defaults to `tokenizer.mask_token_id`.
            **scheduler_kwargs: options of [`MaskedDiffusionScheduler`] (`schedule`, `unmasking`,
                `remask`, `remask_eta`, `temperature`, `decode`, `num_train_timesteps`).
        """
        valid = [
            name
            for name in inspect.signature(MaskedDiffusionScheduler.__init__).parameters
            if name not in ("self", "mask_token_id")
        ]
        unknown = sorted(set(scheduler_kwargs) - set(valid))
        if unknown:
            raise ValueError(
                f"Unknown scheduler option(s) {unknown} for `from_model`; valid options are "
                f"{valid}."
            )
        if mask_token_id is None and tokenizer is not None:
            mask_token_id = getattr(tokenizer, "mask_token_id", None)
        if mask_token_id is None:
            raise ValueError(
                "`mask_token_id` is None and the tokenizer has no mask token "
                f"(tokenizer={type(tokenizer).__name__ if tokenizer is not None else None}). Pass "
                "`mask_token_id=` explicitly or a tokenizer with a mask token."
            )
        scheduler = MaskedDiffusionScheduler(mask_token_id=mask_token_id, **scheduler_kwargs)
        return cls(model=model, scheduler=scheduler, tokenizer=tokenizer)

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def mask_token_id(self) -> int | None:
        """The scheduler's mask id, else the tokenizer's, else `None`."""
        mask_id = self.scheduler.config.mask_token_id
        if mask_id is None and self.tokenizer is not None:
            mask_id = getattr(self.tokenizer, "mask_token_id", None)
        return mask_id

    @property
    def device(self) -> torch.device:
        """diffusers' `device`, also for a plain `nn.Module` denoiser (which has no `.device`):
        the device of its first parameter or buffer."""
        model = self.model
        if isinstance(model, torch.nn.Module) and not hasattr(model, "device"):
            for tensor in itertools.chain(model.parameters(), model.buffers()):
                return tensor.device
            return torch.device("cpu")
        return super().device

    # ------------------------------------------------------------------ inputs

    def check_inputs(
        self,
        prompt,
        input_ids,
        num_samples,
        length,
        num_inference_steps,
        guidance,
        output_type,
        attention_mask,
        fixed_mask,
        callback_on_step_end_tensor_inputs,
        add_special_tokens: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        """Validate the arguments of `__call__` (before any model call). Raises `ValueError`."""
        if self.mask_token_id is None:
            raise ValueError(
                "No mask token id: the scheduler's `mask_token_id` is None and the tokenizer "
                f"({type(self.tokenizer).__name__ if self.tokenizer is not None else None}) has "
                "none. Build the scheduler with `MaskedDiffusionScheduler(mask_token_id=...)` or "
                "use `MaskedDiffusionPipeline.from_model(model, tokenizer, mask_token_id=...)`."
            )
        check_prompt_or_ids(prompt, input_ids, self.tokenizer)
        check_id_masks(input_ids, attention_mask, fixed_mask, self.mask_token_id)
        check_positive_int("num_samples", num_samples, "1")
        check_length(length)
        check_positive_int("num_inference_steps", num_inference_steps, "32")
        check_guidance_callable(guidance)
        check_generator(generator)
        model_vocab = config_int(self.model, ("vocab_size",))
        if guidance is not None:
            check_reward_vocab(getattr(guidance, "reward", None), model_vocab)
            check_guidance_mask_id(guidance, self.mask_token_id)
        if model_vocab is not None and self.mask_token_id >= model_vocab:
            raise ValueError(
                f"`mask_token_id` is {self.mask_token_id} but the model's vocabulary has "
                f"{model_vocab} entries. Use the mask id of the model's tokenizer."
            )
        if input_ids is not None:
            check_ids_in_vocab("input_ids", input_ids, model_vocab)
        check_choice("output_type", output_type, _OUTPUT_TYPES)
        check_callback_tensor_inputs(
            callback_on_step_end_tensor_inputs, self._callback_tensor_inputs
        )
        self._check_positions(prompt, input_ids, length, add_special_tokens)

    def _check_positions(self, prompt, input_ids, length, add_special_tokens: bool) -> None:
        """The longest prompt plus `length` new tokens fits the model's positions."""
        # positions the model can read
        max_pos = config_int(self.model, ("max_position_embeddings", "n_positions"))
        if max_pos is None:
            return
        if prompt is not None:
            longest = max(len(r) for r in self._prompt_rows(prompt, add_special_tokens))
        elif torch.is_tensor(input_ids):
            longest = input_ids.shape[-1]
        else:
            longest = max(len(r) for r in input_ids)
        n_new = length or 0
        if longest + n_new > max_pos:
            raise ValueError(
                f"`length` {n_new} plus the longest prompt ({longest} tokens) exceeds the "
                f"model's {max_pos} positions; use `length={max(1, max_pos - longest)}` or "
                "shorter prompts."
            )

    def _prompt_rows(self, prompt: str | list[str], add_special_tokens: bool) -> list[list[int]]:
        """The token ids of each prompt (no padding)."""
        prompts = [prompt] if isinstance(prompt, str) else prompt
        rows = self.tokenizer(prompts, add_special_tokens=add_special_tokens)["input_ids"]
        return [list(r) for r in rows]

    def prepare_inputs(
        self,
        prompt: str | list[str] | None,
        input_ids: torch.LongTensor | list[list[int]] | None,
        length: int | None,
        attention_mask: torch.LongTensor | None,
        fixed_mask: torch.BoolTensor | None,
        add_special_tokens: bool,
    ) -> tuple[torch.LongTensor, torch.LongTensor, torch.BoolTensor]:
        """
        Build the starting sequence (before `num_samples` repetition).

        Returns:
            `(sample, attention_mask, fixed_mask)`, each `(B, L)`: ids with `length` mask tokens
            appended, 1 at real tokens and 0 at left padding, True where a position never changes.
        """
        mask_id = self.mask_token_id
        pad = pad_token_id(self.tokenizer, self.model)
        if prompt is not None:
            ids, am = left_pad(self._prompt_rows(prompt, add_special_tokens), pad, "prompt")
            fixed = None
        elif torch.is_tensor(input_ids):
            ids = input_ids.unsqueeze(0) if input_ids.ndim == 1 else input_ids
            ids = ids.cpu()
            am = (
                torch.ones_like(ids)
                if attention_mask is None
                else attention_mask.reshape(ids.shape).long().cpu()
            )
            fixed = None if fixed_mask is None else fixed_mask.reshape(ids.shape).cpu()
        else:
            ids, am = left_pad(input_ids, pad, "input_ids")
            fixed = None
        if fixed is None:
            fixed = ids != mask_id
        fixed = fixed | (am == 0)  # padding never changes

        ids, am, fixed = append_masks(ids, am, fixed, mask_id, length or 0)
        source = "prompt" if prompt is not None else "input_ids"
        check_something_to_generate(ids, fixed, mask_id, length, source)
        return ids, am, fixed

    # ------------------------------------------------------------------ call

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        input_ids: torch.LongTensor | list[list[int]] | None = None,
        num_samples: int = 1,
        length: int | None = None,
        num_inference_steps: int = 32,
        guidance: Callable | None = None,
        generator: torch.Generator | None = None,
        output_type: Literal["text", "ids"] = "text",
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        attention_mask: torch.LongTensor | None = None,
        fixed_mask: torch.BoolTensor | None = None,
        add_special_tokens: bool = False,
    ) -> MaskedDiffusionPipelineOutput | tuple:
        r"""
        Generate (continue prompts or fill in mask tokens).

        Args:
            prompt (`str` or `list[str]`, *optional*):
                Text prompts, tokenised with `add_special_tokens`; mask tokens written in the text
                (e.g. `"[MASK]"`) are filled in. Prompts of different lengths are left-padded.
            input_ids (`torch.LongTensor` of shape `(B, L)` or `(L,)`, or `list[list[int]]`):
                Token ids instead of `prompt`. Positions holding the mask token are generated, all
                others stay fixed (infilling). Ragged lists are left-padded.
            num_samples (`int`, defaults to 1):
                Samples per prompt (rows are repeated with `repeat_interleave`).
            length (`int`, *optional*):
                Number of new tokens appended as mask tokens after each prompt (0 / `None`: none,
                then the prompt must contain mask tokens).
            num_inference_steps (`int`, defaults to 32):
                Denoising steps (one model call each).
            guidance (`Callable`, *optional*):
                Hook `guidance(logits, sample, editable=, step=, num_steps=, generator=,
                attention_mask=) -> logits` applied between the model call and the scheduler step.
                `guidance.reset()` is called first, `guidance.trace` is copied into the output and
                `guidance.score(one_hot, attention_mask=)` gives `rewards`, when present.
            generator (`torch.Generator`, *optional*):
                Source of all randomness (scheduler and guidance): a seeded generator reproduces
                a run.
            output_type (`"text"` or `"ids"`, defaults to `"text"`):
                `"text"` also decodes `texts` (needs a tokenizer, else `texts` is `None`).
            return_dict (`bool`, defaults to `True`):
                Return a [`MaskedDiffusionPipelineOutput`] instead of a tuple.
            callback_on_step_end (`Callable`, *optional*):
                `callback_on_step_end(pipe, step, timestep, callback_kwargs)` after each
                scheduler step; may return a dict whose `"sample"` replaces the current sequence.
            callback_on_step_end_tensor_inputs (`list[str]`, defaults to `["sample"]`):
                Tensors passed in `callback_kwargs`, a subset of
                `["sample", "logits", "pred_original_sample"]`.
            attention_mask (`torch.LongTensor` of the shape of `input_ids`, *optional*):
                1 at real tokens, 0 at padding (tensor `input_ids` only); padding is fixed.
            fixed_mask (`torch.BoolTensor` of the shape of `input_ids`, *optional*):
                Which positions of tensor `input_ids` never change. Default: every non-mask token.
                Unfixed non-mask tokens count as already generated (remasking may revise them).
            add_special_tokens (`bool`, defaults to `False`):
                Tokenise prompts with the tokenizer's special tokens (e.g. BERT's
                `[CLS] ... [SEP]`).

        Returns:
            [`MaskedDiffusionPipelineOutput`] or `tuple` `(sequences, texts, rewards, trace)`.
        """
        tensor_inputs = callback_tensor_inputs(
            callback_on_step_end, callback_on_step_end_tensor_inputs
        )
        # 1. Checks and inputs, all before the first model call.
        self.check_inputs(
            prompt,
            input_ids,
            num_samples,
            length,
            num_inference_steps,
            guidance,
            output_type,
            attention_mask,
            fixed_mask,
            tensor_inputs,
            add_special_tokens=add_special_tokens,
            generator=generator,
        )
        inputs = self.prepare_inputs(
            prompt, input_ids, length, attention_mask, fixed_mask, add_special_tokens
        )
        # where the model runs (the accelerator when model CPU offload is on)
        device = self._execution_device
        run = self.prepare_generation(
            inputs,
            num_samples,
            device,
            guidance=guidance,
            generator=generator,
            callback=callback_on_step_end,
            callback_tensor_inputs=tensor_inputs,
        )
        timesteps = self.prepare_timesteps(num_inference_steps, device)
        if guidance is not None and callable(getattr(guidance, "reset", None)):
            guidance.reset()

        # 2. Denoising loop: model call, guidance hook, scheduler step, step-end callback.
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                self.denoising_step(run, i, t)
                progress_bar.update()

        # 3. Outputs.
        rewards, trace = guidance_results(run)
        texts = self.decode_generated(run) if output_type == "text" else None
        self.maybe_free_model_hooks()
        if not return_dict:
            return run.sample, texts, rewards, trace
        return MaskedDiffusionPipelineOutput(
            sequences=run.sample, texts=texts, rewards=rewards, trace=trace
        )

    def prepare_generation(
        self,
        inputs: tuple[torch.LongTensor, torch.LongTensor, torch.BoolTensor],
        num_samples: int,
        device: torch.device,
        *,
        guidance: Callable | None,
        generator: torch.Generator | None,
        callback: Callable | PipelineCallback | MultiPipelineCallbacks | None,
        callback_tensor_inputs: list[str],
    ) -> Generation:
        """
        The state of a generation: the `(sample, attention_mask, fixed_mask)` of
        [`~MaskedDiffusionPipeline.prepare_inputs`], each row repeated `num_samples` times
        (`repeat_interleave`) on `device`, with how to call the model and the call's options.
        Warns when the model is in training mode.
        """
        if isinstance(self.model, torch.nn.Module) and self.model.training:
            logger.warning(
                "The model is in training mode (dropout is active, outside `generator`'s "
                "control); call `model.eval()` for reproducible generations."
            )
        sample, am, fixed = (x.repeat_interleave(num_samples, dim=0).to(device) for x in inputs)
        by_name, with_mask = forward_kwargs(self.model)
        # a scheduler with `ranking="prior"` ranks by the unguided logits
        by_prior = getattr(self.scheduler, "config", {}).get("ranking") == "prior"
        return Generation(
            sample=sample,
            attention_mask=am,
            fixed=fixed,
            mask_token_id=self.mask_token_id,
            by_name=by_name,
            with_mask=with_mask,
            guidance=guidance,
            rank_by_prior=guidance is not None and by_prior,
            generator=generator,
            callback=callback,
            callback_tensor_inputs=callback_tensor_inputs,
        )

    def prepare_timesteps(self, num_inference_steps: int, device: torch.device) -> torch.Tensor:
        """Set the scheduler's grid on `device` and return its descending `timesteps` `(N,)`."""
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        return timesteps

    def denoising_step(self, run: Generation, step: int, timestep: torch.Tensor) -> None:
        """
        One step of the reverse process on `run`: the model's logits `(B, L, V)` with the mask
        token suppressed, the guidance hook's rewrite of them, the scheduler's step from
        `timestep`, then `callback_on_step_end`. Updates `run.sample` and `run.logits`.
        """
        logits = model_logits(
            self.model, run.sample, run.attention_mask, run.by_name, run.with_mask
        )  # (B, L, V)
        suppress_mask_token(logits, run.mask_token_id, inplace=True)
        rank = {"ranking_logits": logits} if run.rank_by_prior else {}
        if run.guidance is not None:
            logits = guided_logits(run, logits, step, self._num_timesteps)
        out = self.scheduler.step(
            logits,
            timestep,
            run.sample,
            mask_token_id=run.mask_token_id,
            fixed_mask=run.fixed,
            generator=run.generator,
            **rank,
        )
        run.sample, run.logits = out.prev_sample, logits
        if run.callback is not None:
            run.sample = step_end_callback(self, run, step, timestep, out.pred_original_sample)

    def decode_generated(self, run: Generation) -> list[str] | None:
        """Per row of a finished run, the text of its generated part (from the first position
        that was not fixed), special tokens skipped; `None` without a tokenizer."""
        if self.tokenizer is None:
            return None
        generated = ~run.fixed  # (B, L) positions the run filled in
        return decode_texts(self.tokenizer, run.sample, run.attention_mask, generated)
