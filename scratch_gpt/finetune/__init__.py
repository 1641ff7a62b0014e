"""Fine-tuning a pretrained GPT: classification (book chapter 6), instruction following and chat (chapter 7),
preference tuning with DPO (the chapter 7 bonus) and LoRA (appendix E). For each chapter: ``*_data`` (datasets
and batching), ``*_training`` (the book's loop on a loaded model) and ``*_pipeline`` (load -> data -> train ->
evaluate -> save, from one config object)."""
