"""Pretraining (book chapter 5 with appendix D): the training loop, crash-proof checkpoints and run state, the
loss history and its plot, the one-call pipeline from a text corpus, and the demo."""
