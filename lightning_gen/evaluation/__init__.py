"""What a model knows, in numbers: log-likelihood requests, task files and their metrics. Imports the decoding and
text layers, never Lightning. `loglikelihood` scores strings as lm-evaluation-harness does; `tasks` reads task
files into tokenized requests once; `metrics` turns per-example scores gathered from every process into accuracies,
centred accuracies and bits per byte."""
