"""The PyTorch side of docs/benchmarks.md: the identical U-Net and recipe as `unet-lab bench`.

Per level two 3x3 conv (padding 1, bias) + ReLU; 2x2 max-pool between levels; decoder 2x2
stride-2 transposed conv (bias, no activation), concat [up, skip], two 3x3 conv + ReLU; head
1x1 conv to 1 channel + ReLU with MSE against a random {0,1} mask (or 2 channels + softmax CE).
Adam lr 1e-3 (or SGD lr 1e-2, momentum 0.99). `--norm batch|instance` puts BatchNorm2d or
InstanceNorm2d(affine=True) after each 3x3 conv and `--activation elu` ELU instead of ReLU, as
unet-lab places them (conv -> norm -> activation); `--presence-head` adds the presence head
(global average pool of the bottleneck -> linear -> one logit, BCE against "mask not empty").
Prints one JSON object like `bench --json`.

    python3 benchmarks/pytorch_unet.py --widths 3,6,12,24,48 --size 128 --batch 8 --threads 2
    python3 benchmarks/pytorch_unet.py --device cuda --widths 64,128,256,512,1024 --batch 2 [--compile]

On CUDA every timed phase ends with torch.cuda.synchronize(), and the peak is the GPU memory
PyTorch allocated (peak_gpu_mb); `--compile` times the network after torch.compile.
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def block(cin, cout, norm, activation):
    layers = [nn.Conv2d(cin, cout, 3, padding=1)]
    if norm == "batch":
        layers.append(nn.BatchNorm2d(cout))
    elif norm == "instance":
        layers.append(nn.InstanceNorm2d(cout, affine=True))
    layers.append(nn.ELU(inplace=True) if activation == "elu" else nn.ReLU(inplace=True))
    return layers


def double_conv(cin, cout, norm="none", activation="relu"):
    return nn.Sequential(*block(cin, cout, norm, activation), *block(cout, cout, norm, activation))


class UNet(nn.Module):
    def __init__(self, widths, classes, norm="none", activation="relu", presence_head=False):
        super().__init__()
        dc = lambda cin, cout: double_conv(cin, cout, norm, activation)
        self.inc = dc(1, widths[0])
        self.downs = nn.ModuleList(dc(widths[i - 1], widths[i]) for i in range(1, len(widths)))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2)
                                 for i in reversed(range(1, len(widths))))
        self.upconvs = nn.ModuleList(dc(2 * widths[i - 1], widths[i - 1])
                                     for i in reversed(range(1, len(widths))))
        self.head = nn.Conv2d(widths[0], classes, 1)
        self.relu_head = classes == 1
        self.presence = nn.Linear(widths[-1], 1) if presence_head else None

    def forward(self, x):
        skips = []
        x = self.inc(x)
        for down in self.downs:
            skips.append(x)
            x = down(F.max_pool2d(x, 2))
        presence = self.presence(x.mean((2, 3))) if self.presence is not None else None
        for up, conv in zip(self.ups, self.upconvs):
            x = conv(torch.cat([up(x), skips.pop()], 1))
        x = self.head(x)
        return (F.relu(x) if self.relu_head else x), presence


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--widths", default="3,6,12,24,48")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--loss", choices=["mse", "ce"], default="mse")
    p.add_argument("--optim", choices=["adam", "sgd"], default="adam")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    p.add_argument("--norm", choices=["none", "batch", "instance"], default="none")
    p.add_argument("--activation", choices=["relu", "elu"], default="relu")
    p.add_argument("--presence-head", action="store_true")
    # unet-lab bench's own options, accepted so that one argument list runs both.
    p.add_argument("--kernels", default="auto")
    a = p.parse_args()
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: PyTorch sees no CUDA GPU (torch.cuda.is_available() is False)")
    device = torch.device(a.device)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    widths = [int(w) for w in a.widths.split(",")]
    model = UNet(widths, 1 if a.loss == "mse" else 2, a.norm, a.activation, a.presence_head).to(device)
    net = torch.compile(model) if a.compile else model
    opt = (torch.optim.Adam(model.parameters(), lr=1e-3) if a.optim == "adam"
           else torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.99))
    x = torch.randn(a.batch, 1, a.size, a.size, device=device)
    y = (torch.rand(a.batch, 1, a.size, a.size, device=device) > 0.5).float()

    def step():
        opt.zero_grad(set_to_none=True)
        out, presence = net(x)
        loss = F.mse_loss(out, y) if a.loss == "mse" else F.cross_entropy(out, y[:, 0].long())
        if presence is not None:
            present = (y.flatten(1).amax(1, keepdim=True) > 0).float()
            loss = loss + F.binary_cross_entropy_with_logits(presence, present)
        loss.backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    train = a.steps * a.batch / (time.perf_counter() - t)
    model.eval()
    with torch.no_grad():
        for _ in range(a.warmup):
            net(x)
        sync()
        t = time.perf_counter()
        for _ in range(a.steps):
            net(x)
        sync()
        infer = a.steps * a.batch / (time.perf_counter() - t)
    extra = {}
    if a.device == "cuda":
        extra = {"device": torch.cuda.get_device_name(0),
                 "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20}
    print(json.dumps({
        **extra,
        "backend": f"pytorch {torch.__version__} {a.device}" + (" compiled" if a.compile else ""), "widths": widths, "size": a.size, "batch": a.batch,
        "loss": a.loss, "optimizer": a.optim, "parameters": sum(p.numel() for p in model.parameters()),
        "norm": a.norm, "activation": a.activation, "presence_head": a.presence_head,
        "train_img_s": train, "infer_img_s": infer,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": a.threads,
    }))


if __name__ == "__main__":
    main()
