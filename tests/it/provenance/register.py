"""Registers the provenance tests' fixture models with MLflow's own Python client.

Usage: python register.py FIXTURES_DIR  (MLFLOW_TRACKING_URI names the server)
Prints one JSON object: the run ids the tests name in runs:/ URIs.

Every registered model is a run's artifact directory holding fixture files, registered with
create_model_version (the model registry as a team that logs plain files uses it):
- ft-catalogue: version 1 softmax.bin (alias champion), version 2 ova.bin; run "a" has params,
  tags and a logged dataset input;
- ft-moving, ft-locked: versions 1 softmax.bin and 2 hs.bin, alias live/champion -> 1 (tests
  move them; one model per test, so that tests running side by side do not meet);
- onnx-tfidf: version 1 holds an ONNX model and its labels file;
- pyfunc-model: version 1 holds what a pyfunc logs (MLmodel, python_model.pkl): never fetched;
- ft-two-files: version 1 holds two fastText files.
"""

import json
import os
import pickle
import sys
import tempfile

import mlflow
import pandas as pd
from mlflow import MlflowClient

fixtures = sys.argv[1]
ft = lambda f: os.path.join(fixtures, "fasttext", f)
ox = lambda f: os.path.join(fixtures, "onnx", f)
client = MlflowClient()
mlflow.set_experiment("lastmile-fixtures")
runs = {}


def logged_run(key, files, params=None, tags=None, dataset=None):
    with mlflow.start_run(run_name=f"train-{key}") as run:
        if params:
            mlflow.log_params(params)
        if tags:
            mlflow.set_tags(tags)
        if dataset:
            frame = pd.DataFrame({"title": ["chef knife"], "label": ["kitchen_knives"]})
            data = mlflow.data.from_pandas(frame, source=dataset, name="catalogue-train")
            mlflow.log_input(data, context="training")
        for f in files:
            mlflow.log_artifact(f, "model")
    runs[key] = run.info.run_id
    return run


def register(name, run, alias=None):
    try:
        client.create_registered_model(name)
    except mlflow.exceptions.MlflowException:
        pass
    v = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    if alias:
        client.set_registered_model_alias(name, alias, v.version)
    return v.version


a = logged_run(
    "a",
    [ft("softmax.bin")],
    params={"lr": "0.5", "dim": "16", "epoch": "25"},
    tags={"git_commit": "4f1c2e9"},
    dataset="s3://catalogue/train-v14.jsonl",
)
register("ft-catalogue", a, alias="champion")
register("ft-catalogue", logged_run("b", [ft("ova.bin")], params={"loss": "ova"}))
for name, alias in [("ft-moving", "live"), ("ft-locked", "champion")]:
    register(name, logged_run(f"{name}-1", [ft("softmax.bin")]), alias=alias)
    register(name, logged_run(f"{name}-2", [ft("hs.bin")], params={"loss": "hs"}))
register(
    "onnx-tfidf",
    logged_run("onnx", [ox("tfidf_lr_nozipmap.onnx"), ox("tfidf_lr_nozipmap.labels.txt")]),
)
with tempfile.TemporaryDirectory() as tmp:
    mlmodel = os.path.join(tmp, "MLmodel")
    with open(mlmodel, "w") as f:
        f.write("flavors:\n  python_function:\n    loader_module: mlflow.pyfunc.model\n")
    pkl = os.path.join(tmp, "python_model.pkl")
    with open(pkl, "wb") as f:
        pickle.dump({"a": "harmless stand-in"}, f)
    register("pyfunc-model", logged_run("pyfunc", [mlmodel, pkl]))
register("ft-two-files", logged_run("two", [ft("softmax.bin"), ft("ova.bin")]))
print(json.dumps(runs))
