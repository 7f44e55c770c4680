"""Writes local_reference.json: token ids and embeddings of a few sentences computed by the
Hugging Face tokenizer and a numpy BERT forward pass over the same safetensors weights, the
reference the local embedder's test compares against. Run:

    python3 local_reference.py MODEL_DIR > local_reference.json
"""
import json
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SENTENCES = [
    "A man is playing a guitar.",
    "Someone plays an acoustic guitar on stage.",
    "The quarterly invoice is due at the end of the month.",
    "Café owners in Zürich raised prices – naïvely?",
    "How do I rotate the API keys of my tenant?",
]


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def gelu(x):
    from math import erf
    return 0.5 * x * (1.0 + np.vectorize(erf)(x / np.sqrt(2.0)))


def embed(w, cfg, ids):
    h, nh = cfg["hidden_size"], cfg["num_attention_heads"]
    d = h // nh
    eps = cfg["layer_norm_eps"]
    n = len(ids)
    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][:n]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda name, v: v @ w[p + name + ".weight"].T + w[p + name + ".bias"]
        q = lin("attention.self.query", x).reshape(n, nh, d).transpose(1, 0, 2)
        k = lin("attention.self.key", x).reshape(n, nh, d).transpose(1, 0, 2)
        v = lin("attention.self.value", x).reshape(n, nh, d).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(d)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(n, h)
        x = layer_norm(x + lin("attention.output.dense", ctx),
                       w[p + "attention.output.LayerNorm.weight"],
                       w[p + "attention.output.LayerNorm.bias"], eps)
        up = gelu(lin("intermediate.dense", x))
        x = layer_norm(x + lin("output.dense", up),
                       w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


def main():
    model = sys.argv[1]
    cfg = json.load(open(f"{model}/config.json"))
    w = {k: v.astype(np.float64) for k, v in load_file(f"{model}/model.safetensors").items()}
    tok = Tokenizer.from_file(f"{model}/tokenizer.json")
    tok.no_truncation()
    tok.no_padding()
    out = []
    for s in SENTENCES:
        ids = tok.encode(s).ids
        out.append({"text": s, "ids": ids, "embedding": [round(float(v), 7) for v in embed(w, cfg, ids)]})
    json.dump(out, sys.stdout)


main()
