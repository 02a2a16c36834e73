"""What a stolen reconfigurable model is worth without its keys (docs/reconfigurable.md,
"Attacks").

    python -m bnnlab.main --config=experiments/rbnn_reactnet.py:runlocal   # the owner's run
    python benchmarks/rbnn_attack.py --workdir=workdirs/rbnn_reactnet_runlocal \\
        [--task=task0] [--fractions=0.1,1.0] [--budgets=20,80,320] [--seeds=0,1,2] [--json=F]

The attacker holds every stored array (checkpoint or export) and the code, not the keys.

* **Zero-shot**: accuracy of every task under three wrong key pairs and under identity
  permutations with zero masks (the stored arrays read as they are); and one task's keys on
  another task's test set, raw and after the best fixed relabelling of the outputs (Hungarian
  assignment on the confusion matrix), plus one task's keys with another task's rows.
* **Fine-tuning**: the attacker trains on a fraction of the task's training labels, with the
  recipe's optimizer (Adam at the recipe's peak lr) and batch size, for each budget of steps,
  starting from (a) the stored arrays under a wrong key, (b) the stored arrays under identity
  permutations and zero masks, (c) scratch (the ordinary initialisation). Same data, order,
  steps and optimizer for the three; 3 seeds (each with its own wrong key, label subset,
  initialisation and data order). The gain is (a) or (b) minus (c).

Run the owner's run with the public demo keys (``:runlocal``) or pass its key flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from scipy import optimize

from bnnlab import reconfig
from bnnlab.data import pipeline
from bnnlab.reconfig import keys, layers
from bnnlab.reconfig import tasks as tasks_lib


def attacker_keys(seed: int) -> keys.KeyMaterial:
    root = hashlib.sha256(f"attacker device {seed}".encode()).digest()
    return keys.KeyMaterial(f"attacker's guess number {seed}".encode(), root)


def unkeyed(template, task) -> dict:
    """The ``task`` collection of identity permutations and zero masks."""
    out = {}
    for k, v in traverse_util.flatten_dict(template, sep="/").items():
        if k.endswith("/perm"):
            out[k] = jnp.arange(v.shape[0], dtype=jnp.int32)
        elif k.endswith("index"):
            out[k] = jnp.asarray(task.index, jnp.int32)
        elif k.endswith("num_classes"):
            out[k] = jnp.asarray(task.num_classes, jnp.int32)
        else:
            out[k] = jnp.zeros(v.shape, v.dtype)
    return traverse_util.unflatten_dict(out, sep="/")


@dataclasses.dataclass
class Subset:
    source: object
    indices: np.ndarray

    def __len__(self):
        return len(self.indices)

    def get(self, indices):
        return self.source.get(self.indices[np.asarray(indices)])


class Attack:
    def __init__(self, workdir: str):
        self.run = reconfig.load(workdir)
        self.model, self.config = self.run.model, self.run.config
        example = jnp.zeros((1, *self.run.run.input_shape))
        shapes = jax.eval_shape(lambda: self.model.init(jax.random.key(0), example))
        self.template, self.example = shapes["task"], example
        self.loaders, self.evals = tasks_lib.build_data(self.config, self.run.tasks)
        self.tx = optax.adam(self.config.lr)
        self._step = jax.jit(self._train_step)
        self._logits = jax.jit(lambda v, x, t: self.model.apply({**v, "task": t}, x, train=False))

    def collection(self, material, task):
        seed, model_seed = material.seed(task.task_id), material.model_seed()
        return tasks_lib.task_variables(self.template, task, seed, model_seed)

    def predictions(self, variables, task_vars, task_index: int):
        preds, labels = [], []
        for batch in self.evals[task_index]():
            logits = self._logits(variables, batch["image"], task_vars)
            keep = np.asarray(batch["mask"])
            preds.append(np.argmax(np.asarray(logits), -1)[keep])
            labels.append(np.asarray(batch["label"])[keep])
        return np.concatenate(preds), np.concatenate(labels)

    def accuracy(self, variables, task_vars, task_index: int, relabel: bool = False):
        preds, labels = self.predictions(variables, task_vars, task_index)
        if not relabel:
            return float(np.mean(preds == labels))
        c = self.run.tasks[task_index].num_classes
        confusion = np.zeros((c, c))
        np.add.at(confusion, (np.minimum(preds, c - 1), labels), 1)
        rows, cols = optimize.linear_sum_assignment(-confusion)
        return float(confusion[rows, cols].sum() / len(labels))

    def _train_step(self, params, batch_stats, opt_state, batch, task_vars):
        def loss_fn(p):
            logits, new = self.model.apply(
                {"params": p, "batch_stats": batch_stats, "task": task_vars},
                batch["image"],
                train=True,
                mutable=["batch_stats"],
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
            return loss.mean(), new["batch_stats"]

        (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = self.tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state

    def finetune(self, start, task_vars, task_index, fraction, seed, budgets):
        loader = self.loaders[task_index]
        n = len(loader.source)
        chosen = np.sort(np.random.default_rng([seed, 1]).permutation(n)[: int(fraction * n)])
        batch_size = min(loader.global_batch, len(chosen))
        sub = pipeline.TrainLoader(
            Subset(loader.source, chosen), batch_size, seed, loader.preprocess, finish=loader.finish
        )
        params, stats = start["params"], start["batch_stats"]
        opt_state = self.tx.init(params)
        out = {}
        for step in range(max(budgets)):
            batch = {k: jnp.asarray(v) for k, v in sub.batch(step).items()}
            params, stats, opt_state = self._step(params, stats, opt_state, batch, task_vars)
            if step + 1 in budgets:
                variables = {"params": params, "batch_stats": stats}
                out[step + 1] = self.accuracy(variables, task_vars, task_index)
        return out

    def scratch(self, seed, material):
        variables = self.model.init(jax.random.key(seed), self.example, train=True)
        collections = [self.collection(material, t) for t in self.run.tasks]
        masked = layers.mask_initial(variables, collections)
        return {"params": masked["params"], "batch_stats": masked["batch_stats"]}


def zero_shot(attack: Attack, owner: keys.KeyMaterial) -> dict:
    stored = {k: attack.run.variables[k] for k in ("params", "batch_stats")}
    tasks = attack.run.tasks
    out = {"right": {}, "wrong": {}, "identity": {}, "cross": {}}
    for t in tasks:
        out["right"][t.task_id] = attack.accuracy(stored, attack.collection(owner, t), t.index)
        out["wrong"][t.task_id] = [
            attack.accuracy(stored, attack.collection(attacker_keys(s), t), t.index)
            for s in range(3)
        ]
        out["identity"][t.task_id] = attack.accuracy(stored, unkeyed(attack.template, t), t.index)
    for a in tasks:
        for b in tasks:
            if a is b:
                continue
            keys_a = attack.collection(owner, a)
            rows_b = attack.collection(owner, dataclasses.replace(a, index=b.index))
            out["cross"][f"{a.task_id} keys on {b.task_id}"] = {
                "raw": attack.accuracy(stored, keys_a, b.index),
                "relabelled": attack.accuracy(stored, keys_a, b.index, relabel=True),
                "with its rows": attack.accuracy(stored, rows_b, b.index),
            }
    return out


def fine_tuning(attack: Attack, task_id: str, fractions, budgets, seeds) -> dict:
    task = tasks_lib.lookup(attack.run.tasks, task_id)
    stored = {k: attack.run.variables[k] for k in ("params", "batch_stats")}
    results = {}
    for fraction in fractions:
        for seed in seeds:
            wrong = attacker_keys(100 + seed)
            wrong_vars = attack.collection(wrong, task)
            starts = {
                "stolen, wrong key": (stored, wrong_vars),
                "stolen, identity": (stored, unkeyed(attack.template, task)),
                "scratch": (attack.scratch(seed, wrong), wrong_vars),
            }
            for name, (start, task_vars) in starts.items():
                acc = attack.finetune(start, task_vars, task.index, fraction, seed, budgets)
                results.setdefault(f"{fraction:g}", {}).setdefault(name, []).append(acc)
                print(f"  labels {fraction:.0%} seed {seed} {name}: {acc}", file=sys.stderr)
    return results


def report(zero: dict, tuned: dict, budgets) -> str:
    lines = [
        "| task | right keys | wrong keys (3 pairs) | identity, zero masks |",
        "|---|---|---|---|",
    ]
    for t, right in zero["right"].items():
        wrong = " / ".join(f"{100 * a:.1f}" for a in zero["wrong"][t])
        lines.append(
            f"| {t} | {100 * right:.1f} % | {wrong} % | {100 * zero['identity'][t]:.1f} % |"
        )
    lines += ["", "| one task's keys on another | raw | best relabelling | with its rows |"]
    lines.append("|---|---|---|---|")
    for name, r in zero["cross"].items():
        lines.append(
            f"| {name} | {100 * r['raw']:.1f} % | {100 * r['relabelled']:.1f} % "
            f"| {100 * r['with its rows']:.1f} % |"
        )
    head = " | ".join(f"{b} steps" for b in budgets)
    lines += ["", f"| labels | start | {head} |", "|---|---|" + "---|" * len(budgets)]
    for fraction, by_start in tuned.items():
        scratch = {b: np.mean([r[b] for r in by_start["scratch"]]) for b in budgets}
        for name, runs in by_start.items():
            cells = []
            for b in budgets:
                mean = np.mean([r[b] for r in runs])
                gain = "" if name == "scratch" else f" ({100 * (mean - scratch[b]):+.1f})"
                cells.append(f"{100 * mean:.1f} %{gain}")
            lines.append(f"| {float(fraction):.0%} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--task", default="task0")
    p.add_argument("--fractions", default="0.1,1.0")
    p.add_argument("--budgets", default="20,80,320")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--user_key_file")
    p.add_argument("--device_key_file")
    p.add_argument("--json")
    args = p.parse_args(argv)
    owner = keys.load(args.user_key_file, args.device_key_file, demo=True)
    attack = Attack(args.workdir)
    attack.run.check_keys(owner)  # the owner's numbers need the owner's keys
    budgets = [int(b) for b in args.budgets.split(",")]
    zero = zero_shot(attack, owner)
    tuned = fine_tuning(
        attack,
        args.task,
        [float(f) for f in args.fractions.split(",")],
        budgets,
        [int(s) for s in args.seeds.split(",")],
    )
    print(report(zero, tuned, budgets))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"zero_shot": zero, "fine_tuning": tuned}, f, indent=1)


if __name__ == "__main__":
    main()
