"""``feat3d svm``: linear-SVM accuracy of extracted features (the C3D/Res3D protocol)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from ..cli import json_option, plot_option, seed_option
from ..clikit import LocationParam
from ..plots import plot_svm_pca, require_matplotlib
from ..train.svm import parse_number_list, pca_rows, summary_lines, svm_evaluate
from .common import out_console


def _numbers(kind: type) -> click.ParamType:
    """A comma-separated list of ``kind``, parsed as ``svm_evaluate`` documents it."""

    class Numbers(click.ParamType):
        name = "numbers"

        def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
            try:
                return value if isinstance(value, tuple) else parse_number_list(value, kind=kind)
            except ValueError as error:
                self.fail(str(error), param, ctx)

    return Numbers()


@click.command("svm")
@click.argument("feats", type=LocationParam(exists=True, path_type=Path))
@click.option("--labels", "-l", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV video,label[,split]; split is train or test (val/"
              "validation = test) on every row or on none (then k-fold). A video is an output "
              "key, the path it was extracted from, a path ending in a key, the end of one key, "
              "or the file name of one key.")  # fmt: skip
@click.option("--folds", type=click.IntRange(min=2), default=3, show_default=True,
              help="Stratified folds when the labels have no split column.")  # fmt: skip
@click.option("--pca", "pca_dims", type=_numbers(int), default="", metavar="D1,D2,...",
              help="Also evaluate after PCA (fitted on each training part) to these dimensions, "
              "e.g. 10,50,100,200,300 as in Tran et al.; sizes not below min(train videos, D) "
              "are skipped.")  # fmt: skip
@click.option("--c", "c_grid", type=_numbers(float), default="0.01,0.1,1,10,100",
              show_default=True, metavar="C1,C2,...",
              help="SVM C values; the best is chosen by "
              "stratified 3-fold cross-validation on the training part only.")  # fmt: skip
@seed_option("Seed of folds and solver.")
@json_option("Write the report as JSON to this file ('-' for stdout).", to_file=True)
@plot_option("With --pca: draw accuracy against PCA dimensions (Tran et al.'s Fig. 3) into "
             "FILE.png (needs matplotlib).")  # fmt: skip
def svm_command(
    feats: Path | str, labels: Path, folds: int, pca_dims: tuple[int, ...],
    c_grid: tuple[float, ...], seed: int, json_path: Path | None, plot_path: Path | None,
) -> None:  # fmt: skip
    """Linear-SVM accuracy of extracted features FEATS (h5, json, npy or parquet output of
    extract; a Parquet folder may be at a URL): per-video mean of clip features, L2-normalized,
    LinearSVC with C chosen on the training part (the C3D/Res3D protocol); mean ± std over
    splits, and over PCA sizes with --pca.

    \b
    Examples:
      feat3d svm feats.h5 --labels labels.csv
      feat3d svm feats.h5 -l ucf101_split1.csv --pca 10,50,100,200,300
      feat3d svm feats/ -l labels.csv --folds 5 --c 0.1,1,10 --json svm.json
      feat3d svm feats.h5 -l labels.csv --pca 10,50,100,200,300 --plot svm_pca.png
      feat3d svm s3://bucket/feats.parquet -l labels.csv
    """
    if plot_path is not None:
        if not pca_dims:
            raise click.BadParameter("needs --pca D1,D2,... (its x axis)", param_hint="--plot")
        require_matplotlib()
    report = svm_evaluate(feats, labels, folds=folds, pca_dims=pca_dims, c_grid=c_grid, seed=seed)
    if plot_path is not None:
        plot_svm_pca(report, plot_path)
        click.echo(f"accuracy against PCA dimensions drawn in {plot_path}", err=True)
    data = json.dumps(report.to_json(), indent=1, ensure_ascii=False)
    if json_path is not None and str(json_path) == "-":
        click.echo(data)
        return
    if json_path is not None:
        json_path.write_text(data + "\n", encoding="utf-8")
    for line in summary_lines(report):
        click.echo(line)
    if pca_dims:
        table = Table(title="SVM accuracy after PCA", title_justify="left")
        for column in ("dims", "accuracy (%)", "C per split"):
            table.add_column(column, justify="right")
        for row in pca_rows(report):
            table.add_row(*row)
        out_console().print(table)
        if report.pca_skipped:
            skipped = ", ".join(map(str, report.pca_skipped))
            click.echo(f"PCA sizes skipped (not below min(train videos, D)): {skipped}")
