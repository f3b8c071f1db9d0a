"""Solutions to the exercises of tutorial 11 (latent weights and Bop); each ends with its check."""

import math

import numpy as np

from minibnn import Tensor, functional as F
from minibnn.data import BatchLoader, load_dataset, transforms
from minibnn.models import build_model
from minibnn.optim import Adam, Bop, Combined, split_binary_parameters

# 1. m_t = 1 - (1 - gamma)^t > tau  <=>  t > log(1 - tau) / log(1 - gamma) = 692.8 -> t = 693.
predicted = math.floor(math.log(1 - 0.5) / math.log(1 - 1e-3)) + 1
w = Tensor(np.array([1.0]), requires_grad=True)
opt = Bop([w], threshold=0.5, gamma=1e-3)
t = 0
while w.data[0] == 1.0:
    w.grad = np.ones(1)
    opt.step()
    t += 1
print(f"1. flipped at step {t}, predicted {predicted}")
assert t == predicted == 693

# 2. A larger threshold needs more evidence: fewer flips.
train, _ = load_dataset("mnist-t10k")
mean, std = np.array(train.mean, np.float32), np.array(train.std, np.float32)


def flips_with(threshold: float) -> int:
    model = build_model("cnn", width=0.5, rng=0)
    binary, other = split_binary_parameters(model)
    bop = Bop(binary, threshold=threshold, gamma=1e-3)
    opt = Combined(bop, Adam(other, lr=2e-3))
    loader = BatchLoader(train.x[:1000], train.y[:1000], 32, rng=0,
                         transform=lambda x, r: transforms.normalize(x, mean, std))
    total = 0
    for step, (xb, yb, _) in enumerate(loader):
        if step == 30:
            break
        loss = F.cross_entropy(model(Tensor(xb)), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += bop.last_flips
    return total


few, many = flips_with(1e-3), flips_with(1e-6)
print(f"2. flips in 30 steps: tau 1e-3 -> {few}, tau 1e-6 -> {many}")
assert few < many


# 3. Pure noise: clipping at 0.2 keeps the weight near 0, where noise flips it often.
def count_flips(clip, w0=0.5, steps=2000, lr=0.01, seed=0):
    r = np.random.default_rng(seed)
    w, flips = w0, 0
    for _ in range(steps):
        new = w - lr * r.normal(0.0, 1.0)
        if clip is not None:
            new = float(np.clip(new, -clip, clip))
        flips += np.sign(new) != np.sign(w)
        w = new
    return int(flips)


free, clipped = count_flips(None), count_flips(0.2)
print(f"3. flips under pure noise: unclipped {free}, clipped at 0.2 {clipped}")
assert clipped > free
