"""Pretrain a character-level GPT with Lightning; run ``python examples/pretrain.py fit --config examples/config.yaml``.

The LightningModule keeps its network, ``model.GPT`` (with a litgpt-style KV cache), in ``self.model``, as
LightningModules usually do; ``lightning_gen``'s monitor finds it there and samples it with its cache. Its
``tokenizer`` is the datamodule's, and it travels in checkpoints.

Example::

    >>> from data import CharDataModule
    >>> dm = CharDataModule(block_size=32)
    >>> module = CharGPT(vocab_size=dm.vocab_size, block_size=32, n_layer=1, n_embd=32)
    >>> module.tokenizer = dm.tokenizer
    >>> logits = module(torch.tensor([dm.tokenizer.encode("def ")]))  # (B, T, V)
    >>> logits.shape == (1, 4, dm.vocab_size)
    True
"""

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from data import CharDataModule, CharTokenizer
from model import GPT


class CharGPT(L.LightningModule):
    """A GPT trained to predict the next character.

    Args:
        vocab_size: Number of characters; on the command line it is taken from the datamodule.
        block_size: Context length; on the command line it is ``data.block_size``.
        n_layer: Transformer blocks.
        n_head: Attention heads per block.
        n_embd: Width of the residual stream.
        dropout: Dropout probability during training.
        tie_weights: Share the token embedding with the output head.
        learning_rate: Peak AdamW learning rate, reached after ``warmup_steps``.
        weight_decay: AdamW weight decay, applied to matrices and embeddings but not to biases and norms.
        warmup_steps: Optimizer steps of linear warmup; then the rate follows a cosine down to
            ``min_lr_ratio * learning_rate`` at the trainer's last step.
        min_lr_ratio: Final learning rate as a fraction of ``learning_rate``.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        block_size: int = 128,
        n_layer: int = 4,
        n_head: int = 4,
        n_embd: int = 128,
        dropout: float = 0.1,
        tie_weights: bool = True,
        learning_rate: float = 3e-3,
        weight_decay: float = 0.1,
        warmup_steps: int = 50,
        min_lr_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        if learning_rate <= 0:
            raise ValueError(f"`learning_rate` must be positive, got {learning_rate}")
        if warmup_steps < 0:
            raise ValueError(f"`warmup_steps` must be >= 0, got {warmup_steps}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"`min_lr_ratio` must be in [0, 1], got {min_lr_ratio}")
        self.save_hyperparameters()
        # Built here, not in `setup`, so `load_from_checkpoint` finds every weight it restores.
        self.model = GPT(
            vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
            dropout=dropout, tie_weights=tie_weights,
        )
        self._tokenizer: CharTokenizer | None = None

    @property
    def tokenizer(self) -> CharTokenizer | None:
        """The tokenizer: one set explicitly, one restored from a checkpoint, or the attached datamodule's.

        Resolved lazily because callbacks run their ``setup`` before the LightningModule's.
        """
        if self._tokenizer is None and self._trainer is not None:
            self.tokenizer = getattr(self._trainer.datamodule, "tokenizer", None)
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer: CharTokenizer | None) -> None:
        if tokenizer is not None and tokenizer.vocab_size != self.hparams.vocab_size:
            raise ValueError(
                f"the tokenizer has {tokenizer.vocab_size} characters but the model was built for "
                f"`vocab_size`={self.hparams.vocab_size}"
            )
        self._tokenizer = tokenizer

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for ids (B, T)."""
        return self.model(idx)

    # Training.

    def setup(self, stage: str) -> None:
        # Resolve the tokenizer now so a datamodule whose vocabulary does not fit the model fails early.
        _ = self.tokenizer

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch  # (B, T), (B, T)
        logits = self(x)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten())

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", self._loss(batch), prog_bar=True)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": hp.weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=hp.learning_rate, betas=(0.9, 0.95))
        total = self.trainer.estimated_stepping_batches  # inf when training has no step or epoch limit

        def lr_factor(step: int) -> float:
            if step < hp.warmup_steps:
                return (step + 1) / hp.warmup_steps
            if math.isinf(total):
                return 1.0
            progress = min(1.0, (step - hp.warmup_steps) / max(1, total - hp.warmup_steps))
            return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # The tokenizer is not a hyperparameter, so it rides along in the checkpoint as its alphabet.

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is not None:
            checkpoint["tokenizer_chars"] = self.tokenizer.chars

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "tokenizer_chars" in checkpoint:
            self.tokenizer = CharTokenizer(checkpoint["tokenizer_chars"])


class CharGPTCLI(LightningCLI):
    """LightningCLI that takes the model's context length and vocabulary from the datamodule."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.block_size", "model.block_size")
        parser.link_arguments("data.vocab_size", "model.vocab_size", apply_on="instantiate")


def cli_main(args: list[str] | None = None) -> LightningCLI:
    """Run the command line (``fit``, ``validate``, ...); ``args`` replaces ``sys.argv[1:]`` in tests."""
    if torch.cuda.is_available():
        # TF32 matmuls: several times faster on Ampere and later, at no visible cost to training.
        torch.set_float32_matmul_precision("high")
    return CharGPTCLI(CharGPT, CharDataModule, save_config_kwargs={"overwrite": True}, args=args)


if __name__ == "__main__":
    cli_main()
