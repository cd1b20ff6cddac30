#!/usr/bin/env python3
"""Generate tiny random Hugging Face MoE checkpoints plus float32 reference outputs.

For every fixture in FIXTURES this script builds a small random model with transformers,
randomises the parameters that are trivial at init (RMSNorm weights, DeepSeek-V3
e_score_correction_bias), rounds all weights to the on-disk dtype, and computes greedy-decoding
references by a plain loop without KV cache (every step re-runs the whole sequence) in float32
on the rounded weights. It writes, into tests/oracle/fixtures/<name>/:

  config.json, generation_config.json, model.safetensors (or shards + model.safetensors.index.json),
  reference.safetensors  (prompt_{p}.input_ids / output_ids / logits / prefill_logits),
  reference.json         (versions, family, min_rel_margin, seed, notes).

Seeds are searched (seed, seed+1, ...) until greedy choices and router choices are well
separated, so that a correct fp32 implementation cannot flip them through rounding order.
Regenerate with:  scripts/install_deps.sh --oracle && python3 tests/oracle/make_fixtures.py
"""
import copy
import functools
import json
import os
import shutil
import struct
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file
from transformers import AutoModelForCausalLM, DeepseekV3Config, MixtralConfig, Qwen3MoeConfig

OUT_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
PROMPT_LENS = (5, 11, 2)   # three prompts of different lengths, each run alone (batch 1)
MAX_NEW_TOKENS = 8
MIN_REL_MARGIN = 2e-3      # (top1 - top2) / max|logit| at every greedy step
MIN_ROUTER_GAP = 1e-4      # score gap at every top-k / group top-k cut-off, every token
MAX_SEEDS = 50
DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}

# initializer_range (std of every Linear/Embedding) was chosen by trial: 0.2 gives final logits of
# magnitude ~5-7 with non-degenerate attention and router softmax; DeepSeek-V3 uses 0.1 so that
# every sigmoid(router logit) + bias stays > 0 (at 0.2 some drop below 0 and HF's 0.0 group mask
# would then diverge from the reference -inf mask). Sizes are tiny but deliberately uneven
# (head_dim != hidden/heads, v_head_dim != qk_nope_head_dim, GQA 2:1 and 4:1) to catch shape bugs.

FIXTURES = [
    dict(name="deepseek_v3_qlora", family="deepseek_v3", dtype="BF16", seed=1000,
         max_shard_size="100KB",
         config=DeepseekV3Config(
             vocab_size=160, hidden_size=48, intermediate_size=64, moe_intermediate_size=16,
             num_hidden_layers=3, first_k_dense_replace=1, num_attention_heads=4,
             num_key_value_heads=4, q_lora_rank=24, kv_lora_rank=16, qk_nope_head_dim=8,
             qk_rope_head_dim=8, v_head_dim=8, n_routed_experts=16, n_group=4, topk_group=2,
             num_experts_per_tok=4, n_shared_experts=1, norm_topk_prob=True,
             routed_scaling_factor=2.5, max_position_embeddings=256, rope_theta=10000.0,
             rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
                           "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0,
                           "mscale_all_dim": 1.0},
             tie_word_embeddings=False, initializer_range=0.1)),
    dict(name="deepseek_v3_noqlora", family="deepseek_v3", dtype="F32", seed=2000,
         config=DeepseekV3Config(
             vocab_size=192, hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
             num_hidden_layers=2, first_k_dense_replace=0, num_attention_heads=4,
             num_key_value_heads=4, q_lora_rank=None, kv_lora_rank=24, qk_nope_head_dim=12,
             qk_rope_head_dim=8, v_head_dim=16, n_routed_experts=8, n_group=2, topk_group=1,
             num_experts_per_tok=2, n_shared_experts=2, norm_topk_prob=False,
             routed_scaling_factor=1.5, max_position_embeddings=128, rope_theta=10000.0,
             rope_scaling=None, tie_word_embeddings=False, initializer_range=0.1)),
    dict(name="qwen3_moe", family="qwen3_moe", dtype="F16", seed=3000,
         config=Qwen3MoeConfig(
             vocab_size=200, hidden_size=48, intermediate_size=64, moe_intermediate_size=32,
             num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
             num_experts=8, num_experts_per_tok=2, norm_topk_prob=False, decoder_sparse_step=1,
             mlp_only_layers=[0], max_position_embeddings=128, rope_theta=10000.0,
             tie_word_embeddings=False, initializer_range=0.2)),
    dict(name="qwen3_moe_tied", family="qwen3_moe", dtype="F32", seed=4000,
         config=Qwen3MoeConfig(
             vocab_size=144, hidden_size=64, intermediate_size=48, moe_intermediate_size=16,
             num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
             num_experts=8, num_experts_per_tok=3, norm_topk_prob=True, decoder_sparse_step=2,
             mlp_only_layers=[], max_position_embeddings=128, rope_theta=1000000.0,
             tie_word_embeddings=True, initializer_range=0.2)),
    dict(name="mixtral", family="mixtral", dtype="F32", seed=5000,
         config=MixtralConfig(
             vocab_size=256, hidden_size=64, intermediate_size=32, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, num_local_experts=8,
             num_experts_per_tok=2, sliding_window=None, max_position_embeddings=128,
             rope_theta=1e6, tie_word_embeddings=False, initializer_range=0.2)),
]


def build_model(fx, seed):
    """Random model for `fx`: HF init, then random norms/bias, then rounding to the disk dtype."""
    torch.manual_seed(seed)
    cfg = copy.deepcopy(fx["config"])
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager",
                                             dtype=torch.float32).eval()
    with torch.no_grad():
        for mod in model.modules():
            if "RMSNorm" in type(mod).__name__:          # all norms, incl. q/k/kv-a norms
                mod.weight.copy_(1.0 + 0.1 * torch.randn_like(mod.weight))
            if hasattr(mod, "e_score_correction_bias"):  # zeros at init -> make it matter
                mod.e_score_correction_bias.uniform_(-0.05, 0.05)
        # Round every persistent tensor (params + saved buffers) to the on-disk dtype and back,
        # so the float32 reference runs on exactly the values stored in the file.
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.to(DTYPES[fx["dtype"]]).to(torch.float32))
    return model


def attach_router_probes(model, stats):
    """Record, for every router call, the smallest gap at each top-k cut-off (and the smallest
    biased sigmoid score for DeepSeek-V3, which must stay > 0: HF masks dropped groups with 0.0)."""
    def kth_gap(scores, k):
        if k >= scores.shape[-1]:
            return float("inf")
        s = scores.sort(dim=-1, descending=True).values
        return float((s[..., k - 1] - s[..., k]).min())

    def deepseek_hook(mod, inputs, _out):
        cfg = mod.config
        x = inputs[0].reshape(-1, cfg.hidden_size).float()
        biased = torch.sigmoid(x @ mod.weight.float().T) + mod.e_score_correction_bias
        stats["min_biased_score"] = min(stats["min_biased_score"], float(biased.min()))
        grouped = biased.view(-1, cfg.n_group, cfg.n_routed_experts // cfg.n_group)
        group_scores = grouped.topk(2, dim=-1).values.sum(-1)
        stats["gaps"].append(kth_gap(group_scores, cfg.topk_group))
        keep = torch.zeros_like(group_scores, dtype=torch.bool)
        keep.scatter_(1, group_scores.topk(cfg.topk_group, dim=-1).indices, True)
        masked = grouped.masked_fill(~keep[..., None], float("-inf")).flatten(1)
        stats["gaps"].append(kth_gap(masked, cfg.num_experts_per_tok))

    def softmax_hook(top_k, _mod, _inputs, out):  # Qwen3-MoE / Mixtral gate = Linear -> logits
        stats["gaps"].append(kth_gap(torch.softmax(out.float(), dim=-1), top_k))

    handles = []
    for name, mod in model.named_modules():
        if type(mod).__name__ == "DeepseekV3TopkRouter":
            handles.append(mod.register_forward_hook(deepseek_hook))
        elif name.endswith(("mlp.gate", "block_sparse_moe.gate")) and hasattr(mod, "out_features"):
            top_k = model.get_submodule(name.rsplit(".", 1)[0]).top_k
            handles.append(mod.register_forward_hook(functools.partial(softmax_hook, top_k)))
    return handles


@torch.no_grad()
def greedy_reference(model, prompt):
    """Plain greedy loop without KV cache; returns output ids, per-step logits, prefill logits."""
    seq, out_ids, step_logits, prefill = list(prompt), [], [], None
    for step in range(MAX_NEW_TOKENS):
        logits = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0].float()
        if step == 0:
            prefill = logits.clone()
        last = logits[-1]
        tok = int(last.argmax())
        out_ids.append(tok)
        step_logits.append(last.clone())
        seq.append(tok)
    return out_ids, torch.stack(step_logits), prefill


def rel_margin(logits):
    top2 = logits.topk(2, dim=-1).values
    return float(((top2[:, 0] - top2[:, 1]) / logits.abs().max(dim=-1).values).min())


def try_seed(fx, seed):
    model = build_model(fx, seed)
    gen = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    prompts = [torch.randint(0, vocab, (n,), generator=gen).tolist() for n in PROMPT_LENS]
    stats = {"gaps": [], "min_biased_score": float("inf")}
    handles = attach_router_probes(model, stats)
    results = [greedy_reference(model, p) for p in prompts]
    for h in handles:
        h.remove()
    margin = min(rel_margin(r[1]) for r in results)
    router_gap = min(stats["gaps"]) if stats["gaps"] else float("inf")
    ok = (margin >= MIN_REL_MARGIN and router_gap >= MIN_ROUTER_GAP
          and stats["min_biased_score"] > 0.0)
    return ok, model, prompts, results, margin, router_gap, stats["min_biased_score"]


def safetensors_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header


def check_saved(fx, outdir, model):
    """Verify file set, per-expert hub tensor names and the on-disk dtype."""
    files = sorted(os.listdir(outdir))
    shards = [f for f in files if f.endswith(".safetensors") and f != "reference.safetensors"]
    header = {}
    for f in shards:
        header.update(safetensors_header(os.path.join(outdir, f)))
    assert set(files) - set(shards) <= {"config.json", "generation_config.json",
                                        "model.safetensors.index.json"}, files
    if fx.get("max_shard_size"):
        assert "model.safetensors.index.json" in files and 2 <= len(shards) <= 3, files
    else:
        assert shards == ["model.safetensors"], files
    assert {v["dtype"] for v in header.values()} == {fx["dtype"]}, "wrong dtype on disk"
    cfg = model.config
    if fx["family"] == "mixtral":
        moe_layers, n_exp = range(cfg.num_hidden_layers), cfg.num_local_experts
        fmt, projs = "model.layers.{}.block_sparse_moe.experts.{}.{}.weight", ("w1", "w2", "w3")
    else:
        if fx["family"] == "deepseek_v3":
            moe_layers = range(cfg.first_k_dense_replace, cfg.num_hidden_layers)
            n_exp = cfg.n_routed_experts
        else:
            moe_layers = [l for l in range(cfg.num_hidden_layers) if l not in cfg.mlp_only_layers
                          and (l + 1) % cfg.decoder_sparse_step == 0]
            n_exp = cfg.num_experts
        fmt, projs = "model.layers.{}.mlp.experts.{}.{}.weight", ("gate_proj", "up_proj", "down_proj")
    expected = {fmt.format(l, e, p) for l in moe_layers for e in range(n_exp) for p in projs}
    expert_keys = {k for k in header if ".experts." in k}
    assert expert_keys == expected, sorted(expert_keys ^ expected)[:8]
    assert ("lm_head.weight" in header) == (not cfg.tie_word_embeddings)
    return sorted(header)


@torch.no_grad()
def verify_reload(outdir, prompts, results):
    """Reload from disk as float32 and check (a) prefill logits equal the reference and (b) an
    HF KV-cached greedy loop picks the same tokens with matching logits."""
    model = AutoModelForCausalLM.from_pretrained(outdir, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    for prompt, (out_ids, ref_logits, ref_prefill) in zip(prompts, results):
        out = model(input_ids=torch.tensor([prompt]), use_cache=True)
        assert torch.allclose(out.logits[0], ref_prefill, rtol=0, atol=1e-5), "reload mismatch"
        for step in range(MAX_NEW_TOKENS):
            last = out.logits[0, -1]
            assert int(last.argmax()) == out_ids[step], "cached greedy differs"
            assert torch.allclose(last, ref_logits[step], rtol=0, atol=1e-4), "cached logits"
            out = model(input_ids=torch.tensor([[out_ids[step]]]),
                        past_key_values=out.past_key_values, use_cache=True)


def make_fixture(fx):
    for seed in range(fx["seed"], fx["seed"] + MAX_SEEDS):
        ok, model, prompts, results, margin, router_gap, min_bias = try_seed(fx, seed)
        print(f"  {fx['name']}: seed {seed} min_rel_margin {margin:.3e} "
              f"min_router_gap {router_gap:.3e} min_biased_score {min_bias:.3f}")
        if ok:
            break
    else:
        sys.exit(f"{fx['name']}: no well-separated seed in {MAX_SEEDS} tries")

    outdir = os.path.join(OUT_ROOT, fx["name"])
    shutil.rmtree(outdir, ignore_errors=True)
    kwargs = {"max_shard_size": fx["max_shard_size"]} if fx.get("max_shard_size") else {}
    model.to(DTYPES[fx["dtype"]]).save_pretrained(outdir, safe_serialization=True, **kwargs)
    keys = check_saved(fx, outdir, model)
    verify_reload(outdir, prompts, results)

    tensors = {}
    for p, (prompt, (out_ids, logits, prefill)) in enumerate(zip(prompts, results)):
        tensors[f"prompt_{p}.input_ids"] = np.asarray(prompt, dtype=np.int32)
        tensors[f"prompt_{p}.output_ids"] = np.asarray(out_ids, dtype=np.int32)
        tensors[f"prompt_{p}.logits"] = logits.numpy().astype(np.float32)
        tensors[f"prompt_{p}.prefill_logits"] = prefill.numpy().astype(np.float32)
    save_file(tensors, os.path.join(outdir, "reference.safetensors"))

    cfg = fx["config"]
    meta = {
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "family": fx["family"],
        "num_prompts": len(PROMPT_LENS),
        "max_new_tokens": MAX_NEW_TOKENS,
        "min_rel_margin": margin,
        "min_router_gap": router_gap,
        "seed": seed,
        "weights_dtype": fx["dtype"],
        "initializer_range": cfg.initializer_range,
        "notes": (
            "Random weights (torch.manual_seed(seed), HF init with the config's initializer_range; "
            "RMSNorm weights 1+0.1*randn; e_score_correction_bias U(-0.05,0.05) for DeepSeek-V3), "
            f"rounded to {fx['dtype']} and back. Reference = float32 eager attention on those "
            "rounded weights, greedy, no KV cache (every step re-runs the full sequence), batch 1. "
            "logits[s] chose output_ids[s]; logits[0] == prefill_logits[-1]. min_router_gap = "
            "smallest score gap at any router top-k / group top-k cut-off over all tokens/steps."),
    }
    with open(os.path.join(outdir, "reference.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"  wrote {outdir} ({len(keys)} weight tensors)")


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # fixed reduction order -> byte-stable references
    only = set(sys.argv[1:])
    for fx in FIXTURES:
        if not only or fx["name"] in only:
            print(f"{fx['name']}:")
            make_fixture(fx)


if __name__ == "__main__":
    main()
