"""Language models for report generation: load any transformers causal LM, or build a small one locally.

``train_report_tokenizer`` and ``build_causal_lm`` make a tokenizer and a test-sized LM from report texts
alone, saved in the transformers format, so the whole pipeline runs without downloading anything (tests,
benchmarks, laptops). Real runs name a local folder or a hub id (e.g. ``lmsys/vicuna-7b-v1.5`` as in the
paper) instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from raddino.reportgen.model import PROMPT

SPECIAL_TOKENS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def train_report_tokenizer(
    texts: Iterable[str], out_dir: str | Path | None = None, vocab_size: int = 512
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on report texts, wrapped for transformers.

    Args:
        texts: Report texts (the training split's, to keep test reports unseen).
        out_dir: Folder to ``save_pretrained`` into (``AutoTokenizer.from_pretrained`` reads it back).
        vocab_size: Target vocabulary size, special tokens included.

    Returns:
        The tokenizer, with ``<pad>``, ``<s>``, ``</s>`` and ``<unk>`` set.
    """
    backend = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.normalizer = normalizers.NFKC()
    # Byte-level pre-tokenisation keeps spaces inside tokens, so decode(encode(text)) == text.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # the prompt is in every sequence: train on it too so it takes few tokens
    backend.train_from_iterator([PROMPT, *texts], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIAL_TOKENS)
    if out_dir is not None:
        tokenizer.save_pretrained(str(out_dir))
    return tokenizer


def build_causal_lm(
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path | None = None,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_positions: int = 512,
    seed: int = 0,
) -> LlamaForCausalLM:
    """A randomly initialised Llama-architecture causal LM sized for ``tokenizer``'s vocabulary.

    Args:
        tokenizer: Gives the vocabulary size and the pad / bos / eos ids.
        out_dir: Folder to ``save_pretrained`` the model (and the tokenizer) into.
        hidden_size: Width; the defaults make a ~0.2M-parameter model that trains in seconds on a CPU.
        num_layers: Decoder blocks.
        num_heads: Attention heads.
        max_positions: Longest sequence (image tokens + prompt + report).
        seed: Seed of the random initialisation.
    """
    import torch

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    if out_dir is not None:
        model.save_pretrained(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
    return model


def load_language_model(source: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer from a local folder or a hub id (a hub id downloads).

    A tokenizer without a pad token gets its eos token as pad (Llama and GPT-2 ship without one);
    padding positions are masked out anyway.

    Raises:
        ValueError: ``source`` is neither a folder with a causal LM nor a loadable hub id.
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
        model = AutoModelForCausalLM.from_pretrained(str(source))
    except (OSError, ValueError) as error:
        raise ValueError(f"{source}: cannot load a causal language model and tokenizer ({error})") from error
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ValueError(f"{source}: the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
