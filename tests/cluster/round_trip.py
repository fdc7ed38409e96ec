#!/usr/bin/python3
"""The cluster round trip (CTest label `cluster`): a generated labelled catalog, exported as a
training set, trained for one epoch by cluster/train.py under torchrun with 2 processes on the CPU
(gloo), imported back through the gate. Checks: the engine's probabilities equal PyTorch's on the
validation images within 1e-4 (the base model crops the centre of each film, as the built-in one does), the version records where it was trained and the gate's decision,
the same training laid out as 2 nodes of 1 process (two torchrun launchers meeting on loopback, as
on a cluster) gives the same model, and train.py refuses an export with an altered or missing file.

    round_trip.py HILUM_CLI MAKE_CATALOG REPO WORKDIR
"""

import json
import os
import shutil
import socket
import subprocess
import sys


def run(cmd, expect=0, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != expect:
        sys.exit(f"FAILED: {' '.join(cmd)}\nexit {p.returncode} (expected {expect})\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def check(condition, message):
    if not condition:
        sys.exit("FAILED: " + message)


def main():
    cli, make_catalog, repo, work = sys.argv[1:5]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    db = os.path.join(work, "hilum.db")
    env = dict(os.environ, HILUM_BUILTIN_MODEL="none", OMP_NUM_THREADS="1")
    # The base model crops the centre (32 of 40): PyTorch's preprocessing must show it the same crop.
    run([make_catalog, db, os.path.join(work, "catalog"), "30", "40"], env=env)

    # Out.
    export = os.path.join(work, "export")
    out = json.loads(run([cli, "--db", db, "export", "--format", "dataset", "--out", export, "--json"], env=env).stdout)
    check(out["splits"]["validation"]["images"] > 0 and out["splits"]["train"]["images"] > 0, f"both splits are used: {out['splits']}")
    manifest = json.load(open(os.path.join(export, "manifest.json")))
    check(manifest["outputs"] == ["Effusion", "Pattern"], f"outputs: {manifest['outputs']}")
    labels = open(os.path.join(export, "labels.csv")).read().splitlines()
    check(any(line.split(",")[3] == "" for line in labels[1:]), "labels.csv keeps 'not assessed' (empty) apart")
    check(any(line.split(",")[3] == "0" for line in labels[1:]), "labels.csv keeps 'absent' (0)")

    # Trained by PyTorch: 2 processes, gloo, one epoch.
    trained = os.path.join(work, "trained")
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--redirects", "1", "--tee", "1",
         os.path.join(repo, "cluster", "train.py"), "--export", export, "--out", trained, "--epochs", "1", "--batch", "4"], env=env)
    report = json.load(open(os.path.join(trained, "training_report.json")))
    check(report["world_size"] == 2 and report["backend"] == "gloo", f"2 gloo processes: {report['world_size']} {report['backend']}")
    check(len(report["validation_probabilities"]) == out["splits"]["validation"]["images"], "PyTorch's probabilities of every validation image")

    # The same run as 2 nodes of 1 process each: one torchrun per "node", meeting at a rendezvous
    # on loopback (the layout of the Slurm and Kubernetes lines in cluster/README.md).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    nodes_out = os.path.join(work, "trained-2-nodes")
    launchers = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                                   "--node_rank", str(node), "--master_addr", "127.0.0.1", "--master_port", port,
                                   "--redirects", "1", "--tee", "1", os.path.join(repo, "cluster", "train.py"), "--export", export,
                                   "--out", nodes_out, "--epochs", "1", "--batch", "4"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) for node in (0, 1)]
    for node, launcher in enumerate(launchers):
        try:
            output, _ = launcher.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for other in launchers:
                other.kill()
            sys.exit(f"FAILED: node {node}'s torchrun did not finish")
        check(launcher.returncode == 0, f"node {node}'s torchrun exited {launcher.returncode}:\n{output}")
    nodes = json.load(open(os.path.join(nodes_out, "training_report.json")))
    check(nodes["world_size"] == 2, f"2 nodes of 1 process make a world of 2: {nodes['world_size']}")
    one, two = report["validation_probabilities"], nodes["validation_probabilities"]
    check(sorted(one) == sorted(two), "both runs report every validation image")
    worst = max(abs(a - b) for image in one for a, b in zip(one[image], two[image]))
    check(worst <= 1e-5, f"2 nodes x 1 process train the same model as 1 node x 2 processes: largest difference {worst}")

    # Back.
    model = json.loads(run([cli, "--db", db, "models", "import", trained, "--json"], env=env).stdout)
    shown = json.loads(run([cli, "--db", db, "models", "show", model["version"], "--json"], env=env).stdout)
    check(shown["strategy"] == "cluster", f"strategy {shown['strategy']}")
    check(shown["trained_on"] == "cluster (manifest sha256:" + out["manifest_sha256"][:16] + ")", f"trained on: {shown['trained_on']}")
    agreement = shown["metrics"]["cluster"]["pytorch_agreement"]
    check(agreement["images"] == len(report["validation_probabilities"]), f"compared {agreement['images']} validation images")
    check(agreement["max_abs_difference"] <= 1e-4, f"engine vs PyTorch: {agreement['max_abs_difference']}")
    gate = shown["metrics"]["gate"]
    check(isinstance(gate["promoted"], bool) and gate["reason"], f"gate recorded: {gate}")
    check((shown["status"] == "active") == gate["promoted"], f"status {shown['status']} follows the gate {gate['promoted']}")
    check(shown["metrics"]["cluster"]["changes_since_export"] == [], "nothing changed since the export")

    # The same folder twice is fine (a new version); an altered export is refused before training.
    altered = os.path.join(work, "altered")
    shutil.copytree(export, altered)
    png = sorted(os.listdir(os.path.join(altered, "images")))[0]
    with open(os.path.join(altered, "images", png), "ab") as f:
        f.write(b"\0")
    p = run([sys.executable, os.path.join(repo, "cluster", "train.py"), "--export", altered, "--out", os.path.join(work, "no")],
            expect=2, env=env)
    check("altered" in p.stderr and png in p.stderr, f"the altered file is named: {p.stderr}")
    os.remove(os.path.join(altered, "labels.csv"))
    p = run([sys.executable, os.path.join(repo, "cluster", "train.py"), "--export", altered, "--out", os.path.join(work, "no")],
            expect=2, env=env)
    check("labels.csv: missing" in p.stderr, f"the missing file is named: {p.stderr}")
    check(not os.path.exists(os.path.join(work, "no")), "nothing written on refusal")
    print(f"ok: {model['version']} ({shown['status']}), engine vs PyTorch {agreement['max_abs_difference']:.2e} on "
          f"{agreement['images']} images; 2 nodes vs 1 node: {worst:.1e}; gate: {gate['reason']}")


if __name__ == "__main__":
    main()
