"""Samples for TensorBoard: the dashboard of the samples a run logged, as a tab of TensorBoard.

Installed with the package through the ``tensorboard_plugins`` entry point, so ``tensorboard --logdir
lightning_logs`` shows a **Samples** tab with no extra flag. It reads the runs' records files
(``samples.jsonl``, and `TaskMonitor`'s ``evaluations.jsonl`` for the Evaluations view), so every round is there
however many there are. `plugin` is the TensorBoard side (WSGI routes), `store` reads the records, `shown` makes
their texts visible and diffs them (with the rule and the diff the terminal uses), `shown_tasks` does the same for
the evaluations' flipped examples, ``static/`` holds the page (ES modules and their CSS, no network) that lays
them out.
Importing any of it never imports torch, transformers or Lightning: a plugin that fails to import breaks
TensorBoard's start-up.
"""
