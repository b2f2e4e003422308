"""hf_shapes.py - what the Hugging Face peers of leank-bench share
(hf_e2e.py, torch_train_step.py): the configs of the shapes `leank-bench
--random` knows, and a model of such a shape with random weights made on the
device (N(0, 0.02), norms 1), as `lk_engine_random` makes them."""


def config(shape):
    from transformers import LlamaConfig, Qwen2Config
    if shape == "llama3.1-8b":
        return LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                           num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                           max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
                           rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                         "high_freq_factor": 4.0,
                                         "original_max_position_embeddings": 8192},
                           tie_word_embeddings=False)
    if shape == "qwen2.5-1.5b":
        return Qwen2Config(vocab_size=151936, hidden_size=1536, intermediate_size=8960,
                           num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                           max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                           tie_word_embeddings=True)
    if shape == "tiny":  # a check of the scripts on the CPU
        return LlamaConfig(vocab_size=500, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                           num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=4096,
                           rms_norm_eps=1e-5, tie_word_embeddings=False)
    raise SystemExit(f"unknown shape {shape!r} (expected llama3.1-8b, qwen2.5-1.5b or tiny)")


def random_model(shape, dtype, device):
    """(model, config): SDPA attention, eval mode, random weights of dtype on device."""
    import torch
    from transformers import AutoModelForCausalLM
    cfg = config(shape)
    cfg._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model = model.to_empty(device=device)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)
        rot = type(model.model.rotary_emb)  # its buffers were lost by to_empty: made anew
        model.model.rotary_emb = rot(config=cfg).to(device)
    model.eval()
    return model, cfg
