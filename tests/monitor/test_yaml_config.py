"""GenerationMonitor configured in YAML through LightningCLI, as users configure everything else."""

from __future__ import annotations

import textwrap

from lightning.pytorch.cli import LightningCLI
from tiny import TinyLM, text_events

from lightning_gen import GenerationMonitor


def test_monitor_from_yaml_with_processor_class_path(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(textwrap.dedent(f"""
        trainer:
          max_steps: 4
          accelerator: cpu
          enable_progress_bar: false
          enable_checkpointing: false
          logger:
            class_path: lightning.pytorch.loggers.TensorBoardLogger
            init_args: {{save_dir: "{tmp_path}", name: tb, version: 0}}
          callbacks:
            - class_path: lightning_gen.GenerationMonitor
              init_args:
                prompts: ["ab", "cd"]
                every_n_train_steps: 2
                train_time_interval: null
                seed: 3
                generation: {{max_new_tokens: 5, do_sample: true, top_k: 10, temperature: 0.7}}
                logits_processors:
                  - class_path: transformers.RepetitionPenaltyLogitsProcessor
                    init_args: {{penalty: 1.3}}
    """))
    cli = LightningCLI(TinyLM, args=["fit", "--config", str(config)], save_config_kwargs={"overwrite": True})
    monitor = next(c for c in cli.trainer.callbacks if isinstance(c, GenerationMonitor))
    assert monitor.generation == {"max_new_tokens": 5, "do_sample": True, "top_k": 10, "temperature": 0.7}
    assert type(monitor.logits_processors[0]).__name__ == "RepetitionPenaltyLogitsProcessor"
    events = text_events(cli.trainer.logger.log_dir)
    assert sorted(events["samples/prompt_01"]) == [0, 2, 4]
