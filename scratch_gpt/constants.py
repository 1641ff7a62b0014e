"""Names and numbers the whole package shares, each defined once.

Flat and free of imports, so every layer may use it, the remote-code core included (``save_pretrained`` then
copies this file with the modeling and tokenization files).
"""

# --- special tokens (book chapter 2) ---------------------------------------------------------------------------
END_OF_TEXT = "<|endoftext|>"  # GPT-2's end-of-text token, between documents and after each answer
PAD_TOKEN = "<|pad|>"  # scratch_gpt tokenizers add this distinct pad token; GPT-2 has none
GPT2_EOS_ID = 50256  # the id of <|endoftext|> in GPT-2's vocabulary; the book also pads with it

# --- tokenizer files ---------------------------------------------------------------------------------------------
TOKENIZER_FILE = "tokenizer.json"  # the Rust tokenizer (save_pretrained, BPETokenizer.save)
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"  # the Hugging Face tokenizer's settings
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
VOCAB_FILE = "vocab.json"  # GPT-2's vocabulary in Hugging Face's name
MERGES_FILE = "merges.txt"  # GPT-2's merges in Hugging Face's name
BPE_CONFIG_FILE = "bpe_config.json"  # BPETokenizer.save's settings
HISTORY_FILE = "training_history.json"  # a training run's loss history (training/history.py)
GPT2_FILE_PAIRS = (
    ("encoder.json", "vocab.bpe"),
    (VOCAB_FILE, MERGES_FILE),
)  # OpenAI's names, then Hugging Face's
# any of these in a folder means "a tokenizer is saved here"
TOKENIZER_MARKER_FILES = (TOKENIZER_FILE, VOCAB_FILE, TOKENIZER_CONFIG_FILE)
# every file a Hugging Face GPT-2-style tokenizer may be saved as
TOKENIZER_FILES = (
    TOKENIZER_FILE,
    TOKENIZER_CONFIG_FILE,
    SPECIAL_TOKENS_MAP_FILE,
    VOCAB_FILE,
    MERGES_FILE,
    CHAT_TEMPLATE_FILE,
)

# --- LoRA (appendix E) ------------------------------------------------------------------------------------------
# Every Linear inside the transformer blocks; the LM head stays as it is (it is tied to the token embedding, and
# a merged LoRA delta would untie it). Names match a module name's end after a dot, as peft's target_modules do.
LORA_TARGETS = (
    "att.W_query",
    "att.W_key",
    "att.W_value",
    "att.out_proj",
    "ff.fc_in",
    "ff.fc_out",
)
