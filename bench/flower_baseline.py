"""The same federated training as bench_learning.py's, run by Flower's simulation engine.

Run by bench_learning.py in a virtual environment of its own (``flwr`` pins older FastAPI,
Typer, Rich and Uvicorn than genofed's), so it imports neither genofed nor its helpers:
the model and the local training are the few lines below, the same as
``genofed.analysis.learning``'s (double precision, BCE with logits, SGD or Adam).

    python flower_baseline.py INPUT.npz OUTPUT.json

INPUT.npz holds each node's standardised training rows (``x0``, ``y0``, ``x1``...) and the
settings; OUTPUT.json gets the final weights (flattened as torch orders the parameters)
and the seconds the simulation took.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

DATA = dict(np.load(sys.argv[1]))  # plain arrays: the clients run in Ray's processes
SETTINGS = json.loads(str(DATA["settings"]))


def model() -> torch.nn.Module:
    inputs = int(SETTINGS["inputs"])
    if SETTINGS["kind"] == "logistic":
        return torch.nn.Linear(inputs, 1).double()
    hidden = int(SETTINGS["hidden"])
    return torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.ReLU(),
                               torch.nn.Linear(hidden, 1)).double()  # fmt: skip


def train_locally(module: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> None:
    lr, size = float(SETTINGS["lr"]), int(SETTINGS["batch_size"]) or len(y)
    optimiser = (torch.optim.SGD(module.parameters(), lr=lr) if SETTINGS["optimizer"] == "sgd"
                 else torch.optim.Adam(module.parameters(), lr=lr))  # fmt: skip
    xt, yt = torch.tensor(x), torch.tensor(y)
    loss_of = torch.nn.BCEWithLogitsLoss()
    for _ in range(int(SETTINGS["epochs"])):
        order = torch.randperm(len(y)) if size < len(y) else torch.arange(len(y))
        for a in range(0, len(y), size):
            rows = order[a : a + size]
            optimiser.zero_grad()
            loss_of(module(xt[rows]).ravel(), yt[rows]).backward()
            optimiser.step()


client = ClientApp()


@client.train()
def train(msg: Message, context: Context) -> Message:
    node = int(context.node_config["partition-id"])
    x, y = DATA[f"x{node}"], DATA[f"y{node}"]
    module = model()
    module.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    train_locally(module, x, y)
    content = RecordDict({"arrays": ArrayRecord(module.state_dict()),
                          "metrics": MetricRecord({"num-examples": len(y)})})  # fmt: skip
    return Message(content=content, reply_to=msg)


server = ServerApp()
RESULT: dict = {}


@server.main()
def main(grid: Grid, context: Context) -> None:
    torch.manual_seed(1)
    start = model()
    if SETTINGS["kind"] == "logistic":
        for p in start.parameters():
            torch.nn.init.zeros_(p)
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=3,
                      min_available_nodes=3)  # fmt: skip
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(start.state_dict()),
                            num_rounds=int(SETTINGS["rounds"]))  # fmt: skip
    final = model()
    final.load_state_dict(result.arrays.to_torch_state_dict())
    RESULT["weights"] = torch.nn.utils.parameters_to_vector(final.parameters()).tolist()


if __name__ == "__main__":
    began = time.perf_counter()
    run_simulation(server_app=server, client_app=client, num_supernodes=3,
                   backend_config={"client_resources": {"num_cpus": 1}})  # fmt: skip
    seconds = time.perf_counter() - began
    if "weights" not in RESULT:
        raise SystemExit("the Flower simulation did not finish")
    Path(sys.argv[2]).write_text(json.dumps({**RESULT, "seconds": seconds}))
