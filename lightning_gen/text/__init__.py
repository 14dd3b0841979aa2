"""Text and the data around it: prompts, samples, tokenizers, how samples are rendered and measured. Importing a
module here never imports Lightning; `rendering`, `samples`, `records`, `tables` and `quality` not even torch."""
