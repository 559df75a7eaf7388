"""A plain PyTorch reference for alignlab's math: the GPT forward pass, token log-probs, the
DPO/IPO/cDPO losses, the Bradley-Terry reward-model loss, GAE and the PPO losses.

Written the way a careful PyTorch user would, independently of the Rust code: nn.Module layers,
F.scaled_dot_product_attention, a KV cache for generation, no_grad for the reference model.
Only torch is needed; safetensors files are read by the small reader below.
"""

import json
import math
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "BOOL": torch.bool, "U8": torch.uint8}


def read_safetensors(path):
    """name -> tensor, from a .safetensors file (8-byte header size, JSON header, raw data)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[a:b]), dtype=DTYPES[info["dtype"]]) if b > a else torch.empty(0, dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"])
    return out


class Block(nn.Module):
    def __init__(self, d, n_head):
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.c_attn = nn.Linear(d, 3 * d)
        self.attn.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Module()
        self.mlp.c_fc = nn.Linear(d, 4 * d)
        self.mlp.c_proj = nn.Linear(4 * d, d)

    def forward(self, x, mask, cache=None):
        b, t, c = x.shape
        h = self.ln_1(x)
        q, k, v = self.attn.c_attn(h).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        if cache is not None:
            if cache.get("k") is not None:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.attn.c_proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    """Pre-LayerNorm GPT with learned positions and a tied LM head (GPT-2 names)."""

    def __init__(self, vocab, block, n_layer, n_head, d):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(block, d)
        self.h = nn.ModuleList([Block(d, n_head) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d)

    def forward(self, tokens, valid, caches=None, past_valid=None):
        """Hidden states. valid [B, T] marks real tokens (left padding is False); a query sees
        earlier real keys and itself. With caches, `tokens` continue `past_valid`."""
        all_valid = valid if past_valid is None else torch.cat([past_valid, valid], dim=1)
        pos = (all_valid.long().cumsum(1) - 1).clamp(min=0)[:, -tokens.shape[1] :]
        x = self.wte(tokens) + self.wpe(pos)
        t, tk = tokens.shape[1], all_valid.shape[1]
        qi = torch.arange(tk - t, tk).unsqueeze(1)
        kj = torch.arange(tk).unsqueeze(0)
        mask = ((kj <= qi).unsqueeze(0) & all_valid.unsqueeze(1)) | (kj == qi).unsqueeze(0)
        for i, block in enumerate(self.h):
            x = block(x, mask.unsqueeze(1), None if caches is None else caches[i])
        return self.ln_f(x)

    def logits(self, hidden):
        return hidden @ self.wte.weight.T

    @torch.no_grad()
    def generate(self, prompt, valid, max_new_tokens, temperature=1.0, eos=2):
        """Sampling with a KV cache: the reference for alignlab's rollout speed."""
        caches = [dict() for _ in self.h]
        hidden = self.forward(prompt, valid, caches)
        logits = self.logits(hidden[:, -1])
        done = torch.zeros(prompt.shape[0], dtype=torch.bool)
        out, seen = [], valid
        for _ in range(max_new_tokens):
            tok = torch.multinomial(F.softmax(logits / temperature, -1), 1).squeeze(1)
            tok = tok.masked_fill(done, 0)
            out.append(tok)
            done |= tok == eos
            if bool(done.all()):
                break
            step_valid = torch.ones(prompt.shape[0], 1, dtype=torch.bool)
            hidden = self.forward(tok.unsqueeze(1), step_valid, caches, past_valid=seen)
            seen = torch.cat([seen, step_valid], 1)
            logits = self.logits(hidden[:, -1])
        return torch.stack(out, 1)


def load_gpt(weights, cfg, prefix=""):
    m = GPT(cfg["vocab_size"], cfg["block_size"], cfg["n_layer"], cfg["n_head"], cfg["d_model"])
    state = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    m.load_state_dict(state, strict=True)
    return m


def response_logps(model, prompt, prompt_valid, response, mask):
    """Per-token log pi(y_t | x, y_<t) [B, N] (masked positions 0), one forward pass."""
    tokens = torch.cat([prompt, response], 1)
    valid = torch.cat([prompt_valid, torch.ones_like(response, dtype=torch.bool)], 1)
    hidden = model(tokens, valid)
    p, n = prompt.shape[1], response.shape[1]
    logits = model.logits(hidden[:, p - 1 : p - 1 + n])
    return torch.gather(F.log_softmax(logits, -1), 2, response.unsqueeze(2)).squeeze(2) * mask


def dpo_loss(kind, beta, pc, pr, rc, rr, label_smoothing=0.0):
    """DPO (Rafailov et al. Eq. 7), IPO (Azar et al. Eq. 17), conservative DPO."""
    delta = (pc - rc) - (pr - rr)
    if kind == "sigmoid":
        return -F.logsigmoid(beta * delta)
    if kind == "ipo":
        return (delta - 1 / (2 * beta)) ** 2
    if kind == "cdpo":
        return -(1 - label_smoothing) * F.logsigmoid(beta * delta) - label_smoothing * F.logsigmoid(-beta * delta)
    raise ValueError(kind)


def reward_scores(trunk, head_w, head_b, prompt, prompt_valid, response, mask):
    tokens = torch.cat([prompt, response], 1)
    valid = torch.cat([prompt_valid, torch.ones_like(response, dtype=torch.bool)], 1)
    values = trunk(tokens, valid) @ head_w.T + head_b  # [B, T, 1]
    last = mask.sum(1).long().clamp(min=1) - 1 + prompt.shape[1]
    return values.squeeze(-1).gather(1, last.unsqueeze(1)).squeeze(1)


def reward_loss(rc, rr, margin=0.0, center=0.0):
    loss = -F.logsigmoid(rc - rr - margin).mean()
    return loss + center * ((rc + rr) ** 2).mean() if center > 0 else loss


def gae(rewards, values, mask, gamma, lam):
    """Generalised advantage estimation, the plain backward loop."""
    r, v = rewards * mask, values * mask
    n = r.shape[1]
    adv = torch.zeros_like(r)
    last = torch.zeros(r.shape[0])
    for t in reversed(range(n)):
        nv = v[:, t + 1] if t + 1 < n else torch.zeros(r.shape[0])
        delta = r[:, t] + gamma * nv - v[:, t]
        last = delta + gamma * lam * last
        adv[:, t] = last
    return adv * mask


def masked_mean(x, m):
    return (x * m).sum() / m.sum().clamp(min=1)


def ppo_policy_loss(new, old, adv, mask, clip):
    ratio = torch.exp(new - old)
    return masked_mean(torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip)), mask)


def ppo_value_loss(v, old_v, ret, mask, clip):
    vc = old_v + (v - old_v).clamp(-clip, clip)
    return 0.5 * masked_mean(torch.max((v - ret) ** 2, (vc - ret) ** 2), mask)
