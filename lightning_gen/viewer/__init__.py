"""Views of the samples and evaluations a run logged: the ``lightning-gen`` command, and Samples for TensorBoard
(`tensorboard`, the dashboard's plugin). Never imports torch, transformers or Lightning, so it starts at once on a
login node."""
