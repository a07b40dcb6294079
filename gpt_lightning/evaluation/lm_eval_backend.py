"""Our GPT as a model of lm-evaluation-harness (`pip install gpt_lightning[eval]`): any of its tasks, on our own
checkpoints, with no export step.

    from lm_eval import simple_evaluate
    from gpt_lightning.evaluation.lm_eval_backend import GPTLightningLM

    results = simple_evaluate(model=GPTLightningLM("out/gpt2/version_0/checkpoints/last.ckpt"), tasks=["arc_easy"])

`evaluate --tasks arc_easy,...` does this for every task that is not built in. Importing this module also registers
the class under the name `gpt_lightning` in the harness's model registry (in this process: lm-eval 0.4.13 does not
discover backends of other packages, so its own `lm_eval --model gpt_lightning` command cannot find it).

The harness's TemplateLM splits each (context, continuation) into tokens, as its `hf` backend does; the scoring is
evaluation/loglikelihood.py's (the same as HellaSwag's), generation is GPT.generate_tokens with the KV cache.
Checked against the harness's own `hf` backend on the exported model (tests/unit/test_lm_eval_backend.py).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Optional, Union

import torch
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm.auto import tqdm

from gpt_lightning.errors import UserError
from gpt_lightning.evaluation.loglikelihood import score_rows
from gpt_lightning.model import GPT
from gpt_lightning.tokenizer import Tokenizer


@register_model("gpt_lightning")
class GPTLightningLM(TemplateLM):
    """A GPT and its tokenizer, from anything `generate` loads (a .ckpt written by `fit`, nanoGPT's ckpt.pt, a
    Hugging Face GPT-2 folder, a hub name), or given as objects (model=, tokenizer=)."""

    def __init__(
        self,
        ckpt_path: Optional[str] = None,
        device: str = "auto",
        batch_size: Union[int, str] = 8,
        max_gen_toks: int = 256,
        meta: Optional[str] = None,
        model: Optional[GPT] = None,
        tokenizer: Optional[Tokenizer] = None,
        **unused,  # what the harness passes every model and we do not use (max_batch_size, ...)
    ) -> None:
        super().__init__()
        if model is None:
            if ckpt_path is None:
                raise UserError("The gpt_lightning model needs a checkpoint: pass ckpt_path=PATH (model_args).")
            from gpt_lightning.hardware import resolve_device
            from gpt_lightning.weights.load import load_checkpoint_model

            model, tokenizer = load_checkpoint_model(ckpt_path, resolve_device(device), meta)
        eot = getattr(tokenizer, "eot_token", None)
        if tokenizer is None or eot is None:
            raise UserError(
                f"lm-eval tasks need a GPT-2-BPE model (English text, <|endoftext|> to start from), and "
                f"{ckpt_path or 'this model'} has {'no known' if tokenizer is None else 'a char'} tokenizer."
            )
        try:
            self.batch_size = int(batch_size)
        except ValueError:
            raise UserError(f"batch_size must be a whole number of requests, got {batch_size!r}.") from None
        if self.batch_size < 1:
            raise UserError(f"batch_size must be at least 1, got {self.batch_size}.")
        self.model, self.tokenizer = model.eval(), tokenizer
        self._eot = eot
        self.max_gen_toks = int(max_gen_toks)

    @property
    def eot_token_id(self) -> int:
        return self._eot

    @property
    def max_length(self) -> int:
        return self.model.config.block_size

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tok_encode(self, string: str, add_special_tokens: Optional[bool] = None, **kwargs) -> list[int]:
        return self.tokenizer.encode(string)  # GPT-2 adds no special tokens

    def tok_decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens)

    # ------------------------------------------------------------ log-likelihoods

    def _loglikelihood_tokens(
        self, requests: list[tuple[Optional[tuple[str, str]], list[int], list[int]]], disable_tqdm: bool = False
    ) -> list[tuple[float, bool]]:
        """(sum of the continuation's log-probabilities, whether greedy decoding gives it), in request order.
        Batched longest first, as the `hf` backend (less padding; a lack of memory shows at the first batch)."""
        order = sorted(range(len(requests)), key=lambda i: -(len(requests[i][1]) + len(requests[i][2])))
        results: list[Optional[tuple[float, bool]]] = [None] * len(requests)
        bar = tqdm(total=len(requests), desc="loglikelihood", disable=disable_tqdm)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            rows = score_rows(self.model, [(requests[i][1], requests[i][2]) for i in chunk])
            for i, row in zip(chunk, rows):
                results[i] = (row.logprob, row.greedy)
                if requests[i][0] is not None:
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], results[i])
            bar.update(len(chunk))
        bar.close()
        return results  # type: ignore[return-value]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of whole texts (perplexity tasks): block_size windows that each predict new tokens, the
        first from <|endoftext|> (the harness's own windowing)."""
        windows, owners = [], []
        for i, (text,) in enumerate(req.args for req in requests):
            for context, continuation in map(
                make_disjoint_window,
                get_rolling_token_windows(self.tok_encode(text), self.eot_token_id, self.max_length, context_len=1),
            ):
                windows.append((None, context, continuation))
                owners.append(i)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)
        totals = [0.0] * len(requests)
        for i, (logprob, _) in zip(owners, scores):
            totals[i] += logprob
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # ------------------------------------------------------------ generation

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Each continuation until one of its stop sequences (or <|endoftext|>, or max_gen_toks tokens), cut before
        the stop. Requests with the same settings and the same prompt length share a batch: the model has no
        padding mask, and equal lengths need none."""
        eos = self.tok_decode([self.eot_token_id])
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        prompts, settings = [], []
        for i, (context, gen_kwargs) in enumerate(req.args for req in requests):
            kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            # room for the new tokens, as the hf backend leaves it (our model could also crop as it goes)
            room = self.max_length - kwargs["max_gen_toks"]
            ids = self.tok_encode(context) or [self.eot_token_id]
            prompts.append(ids[-room:] if room > 0 else ids)
            settings.append((kwargs, until))
            groups[(json.dumps(gen_kwargs, sort_keys=True, default=str), len(prompts[-1]))].append(i)
        results: list[Optional[str]] = [None] * len(requests)
        bar = tqdm(total=len(requests), desc="generate_until", disable=disable_tqdm)
        for members in groups.values():
            for start in range(0, len(members), self.batch_size):
                chunk = members[start : start + self.batch_size]
                kwargs, until = settings[chunk[0]]
                texts = self.generate_batch([prompts[i] for i in chunk], kwargs, until)
                for i, text in zip(chunk, texts):
                    results[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
                bar.update(len(chunk))
        bar.close()
        return results  # type: ignore[return-value]

    @torch.no_grad()
    def generate_batch(self, prompts: list[list[int]], kwargs: dict, until: list[str]) -> list[str]:
        """Continue prompts of one length together (KV cache), until every row has met a stop sequence."""
        idx = torch.tensor(prompts, dtype=torch.long, device=self.device)  # (B, T)
        temperature = float(kwargs.get("temperature", 0.0)) if kwargs.get("do_sample") else 0.0
        new: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        tokens = self.model.generate_tokens(
            idx,
            kwargs["max_gen_toks"],
            temperature=temperature,
            top_k=kwargs.get("top_k"),
            top_p=kwargs.get("top_p"),
            vocab_size=self.tokenizer.vocab_size,  # only ids the tokenizer can decode
        )
        for token in tokens:  # (B, 1)
            for r, t in enumerate(token[:, 0].tolist()):
                if not done[r]:
                    new[r].append(t)
                    text = self.tok_decode(new[r])
                    done[r] = t == self.eot_token_id or any(s and s in text for s in until)
            if all(done):
                break  # closing the generator frees the KV cache
        tokens.close()
        return [postprocess_generated_text(self.tok_decode(ids), until, None) for ids in new]
