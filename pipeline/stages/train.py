"""Stage train_mlp@<name> / train_cnn@<name>: train one named architecture.

Reads data/processed/dataset.npz and params (seed, runner, train, models.<kind>.<name>,
tracking). Writes models/<name>.keras, reports/models/<name>/history.csv (DVC plots) and
reports/models/<name>/train.json (DVC metrics), and logs one MLflow run: params, a metric point
per epoch, the summary, the model (named after the architecture) and provenance tags; MLflow
adds its source, git and user tags and system metrics. Resumes an interrupted training.
Stage train_<kind>_replicate@<name>-<k> runs it as `<name>_r<k>`: seed replicate k of the
model, trained with a seed derived from (seed, k) into the files and run of that name.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pipeline.config import ModelSpec, Params, flatten
from pipeline.entry import run_stage

if TYPE_CHECKING:  # Keras loads inside main(), once entry has chosen its backend
    import keras

    from pipeline.runner import Runtime

log = logging.getLogger(__name__)


def _run_tags(
    spec: ModelSpec, data_md5: str, runtime: Runtime, replicate: int = 0
) -> dict[str, str]:
    """What the run is and where it came from: model, data version, commit, experiment, device.

    Every replicate of a model has its `pipeline.model` (MLflow's *Group by* tag) and
    `pipeline.replicate` says which one it is.
    """
    from pipeline import provenance

    return {
        "pipeline.model": spec.name,
        "pipeline.replicate": str(replicate),
        "pipeline.kind": spec.kind,
        "pipeline.source": spec.source,
        "pipeline.stage": f"train_{spec.kind}",
        "dvc.data_md5": data_md5,
        **provenance.git_tags(),
        **provenance.dvc_tags(),
        **runtime.tags(),
    }


def run_params(
    params: Params, spec: ModelSpec, model: keras.Model, dataset: Any, replicate: int = 0
) -> dict:
    """Every hyperparameter that shaped this training, as dotted keys."""
    from pipeline.training import replicate_seed

    return {
        **flatten(spec, "model"),
        "seed": params.seed,
        "replicate": replicate,
        "replicate_seed": replicate_seed(params.seed, replicate),
        **flatten(params.runner, "runner"),
        **flatten(params.preprocess, "preprocess"),
        "model.parameters": model.count_params(),
        "data.train_size": len(dataset["y_train"]),
        "data.validation_size": len(dataset["y_val"]),
    }


def build_trainee(
    params: Params, spec: ModelSpec, dataset: Any, runtime: Runtime
) -> tuple[keras.Model, keras.Model]:
    """The model to save and the compiled model to fit (the same one, or it behind
    augmentation, sharing its weights), built under the runtime's strategy."""
    from pipeline import training
    from pipeline.augment import with_augmentation
    from pipeline.models import build_model

    with runtime.strategy.scope():
        model = build_model(spec, dataset["x_train"].shape[1:], params.data.num_classes)
        blank = (0.0 - dataset["mean"]) / dataset["std"]  # a blank pixel, normalised
        trainee = with_augmentation(model, spec.augment, blank)  # shares model's weights
        training.compile_model(trainee, spec.train, len(dataset["y_train"]), runtime.jit_compile)
    return model, trainee


def main(params: Params, name: str) -> None:
    from pipeline import data, io, models, paths, provenance, runner, tracking, training

    spec, replicate = params.replicate(name)
    seed = training.replicate_seed(params.seed, replicate)  # params.seed for replicate 0
    runtime = runner.configure(params.runner, seed)
    dataset = data.load_dataset(paths.DATASET)
    data_md5 = provenance.file_md5(paths.DATASET)
    experiment = tracking.connect(params.tracking)  # an unreachable store fails before training
    model, trainee = build_trainee(params, spec, dataset, runtime)

    checkpoint = training.Checkpoint(
        paths.checkpoint_dir(name),
        training.fingerprint(spec, seed, params.runner, data_md5),
        owner=paths.CHECKPOINTS_DIR,
    )
    checkpoint.start()
    tags = _run_tags(spec, data_md5, runtime, replicate)
    # An interrupted training continues its run, if that run is in this store.
    resumed = checkpoint.run_id()
    if resumed is not None and tracking.run_status(resumed) is None:
        resumed = None
    with tracking.start_run(experiment, name, tags, run_id=resumed) as run:
        checkpoint.save_run_id(run.run_id)
        run.log_params(run_params(params, spec, model, dataset, replicate))
        run.log_dvc_datasets(paths.DATASET, data_md5, dataset)
        run.log_text(tracking.model_summary(model), "model_summary.txt")
        history = training.fit(
            trainee,
            dataset,
            spec.train,
            checkpoint,
            [tracking.EpochLogger(run)],
            seed=seed,
        )

        summary = training.summarize(history, model.count_params())
        model_path = paths.model_file(name)
        io.write_with(model_path, lambda temporary: models.save_model(model, temporary))
        io.write_text(paths.model_reports(name) / "history.csv", history.to_csv(index=False))
        io.write_json(paths.model_reports(name) / "train.json", summary)
        log.info("%s: %s", name, summary)

        run.set_tags({"pipeline.model_sha256": provenance.file_sha256(model_path)})
        if params.tracking.log_model:
            run.log_keras_model(model, dataset["x_val"][:5], name)
        # The curves already hold the per-epoch values; only totals are new here (linked to the
        # logged model, like evaluate's metrics later).
        run.log_metrics(
            {"train_seconds": summary["train_seconds"], "parameters": summary["parameters"]}
        )
    checkpoint.clear()
    run.raise_failures()


if __name__ == "__main__":
    run_stage(main, __doc__, per_model=True)
