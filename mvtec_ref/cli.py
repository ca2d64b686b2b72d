"""The ``mvtec-ref`` command line. User errors become one-line ClickExceptions here only."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mvtec_ref import __version__
from mvtec_ref.errors import MvtecRefError
from mvtec_ref.wording import count


class _Group(click.Group):
    """Turns the toolkit's input errors into ``Error: <file>: <problem>`` and exit 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MvtecRefError as error:
            raise click.ClickException(str(error)) from None
        except OSError as error:  # no permission, disk full, ...: the path and the reason, one line
            where = error.filename if error.filename is not None else "mvtec-ref"
            raise click.ClickException(f"{where}: {error.strerror or error}") from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mvtec-ref")
@click.option("-v", "--verbose", count=True, help="Log what each step does (-vv: debug).")
def main(verbose: int) -> None:
    """Build referring industrial anomaly segmentation benchmarks from anomaly-detection data."""
    import logging

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _progress(quiet: bool) -> bool | None:
    return False if quiet else None


class _FiniteFloatRange(click.FloatRange):
    """A FloatRange that also refuses nan and inf (click's comparisons let nan through)."""

    def convert(self, value, param, ctx):
        import math

        value = super().convert(value, param, ctx)
        if not math.isfinite(value):
            self.fail(f"{value} is not a finite number", param, ctx)
        return value


def _split_ratios(text: str) -> tuple[float, float, float]:
    import math

    try:
        ratios = tuple(float(x) for x in text.split(","))
    except ValueError:
        ratios = ()
    if (
        len(ratios) != 3
        or not all(math.isfinite(r) and r >= 0 for r in ratios)
        or abs(sum(ratios) - 1) > 1e-6
    ):
        raise click.BadParameter(f"{text!r} is not three shares >= 0 summing to 1, like 0.6,0.1,0.3")
    return ratios


def _shard(text: str | None) -> tuple[int, int] | None:
    from mvtec_ref.errors import MvtecRefError
    from mvtec_ref.shards import parse_shard

    if text is None:
        return None
    try:
        return parse_shard(text)
    except MvtecRefError as error:
        raise click.BadParameter(str(error).removeprefix(f"--shard {text!r}: ")) from None


def _device(value: str | None) -> str | None:
    import re

    if value is not None and not re.fullmatch(r"cpu|mps|cuda(:\d{1,3})?", value):
        raise click.BadParameter(f"{value!r} is not a device: use cpu, cuda, cuda:N or mps")
    return value


def _sha256(value: str | None) -> str | None:
    import re

    if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise click.BadParameter(f"{value!r} is not a SHA-256 (64 hex digits)")
    return value


def _force_option(f):
    """``--force``: replace a single-file output that mvtec-ref did not write (never an input)."""
    return click.option(
        "--force",
        is_flag=True,
        help="Replace the output file even if mvtec-ref did not write it (an input is never replaced).",
    )(f)


@main.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the MVTec-AD-layout tree to (replaced atomically).",
)
@click.option(
    "--scale",
    type=click.Choice(["small", "full"]),
    default="small",
    show_default=True,
    help="small: every category and defect type, few images, 1/4 size; "
    "full: MVTec AD's real counts and sizes.",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--category", "categories", multiple=True, help="Only this category (repeatable).")
@click.option(
    "--per-type",
    type=click.IntRange(1, 100_000),
    help="Defective images per defect type (and as many good test images, twice as many train "
    "good), instead of the scale's counts.",
)
@click.option("--workers", type=click.IntRange(1, 512), default=1, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def synth(
    out: Path, scale: str, seed: int, categories: tuple[str, ...], per_type: int | None, workers: int,
    quiet: bool,
) -> None:  # fmt: skip
    """Draw a synthetic tree in MVTec AD's layout (the embedded default; no download)."""
    from mvtec_ref.synth import write_synthetic_tree

    try:
        summary = write_synthetic_tree(
            out, scale=scale, seed=seed, workers=workers, progress=_progress(quiet),
            categories=categories, per_type=per_type,
        )  # fmt: skip
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--category") from None
    click.echo(
        f"wrote {count(summary['images'], 'image')} ({summary['defect_images']} defective, "
        f"{count(summary['regions_planned'], 'region')}) to {out}"
    )


def _llm_options(f):
    """Options shared by ``paraphrase`` and ``build --paraphrase`` (ParaphraseConfig fields)."""
    options = [
        click.option("--base-url", help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1."),
        click.option("--model", help="Model name the endpoint serves."),
        click.option("--temperature", type=_FiniteFloatRange(0, 2), default=0.7, show_default=True,
                     help="Sampling temperature of the endpoint (OpenAI's range)."),
        click.option("--timeout", "timeout_s", type=_FiniteFloatRange(0, 3600, min_open=True), default=30.0,
                     show_default=True, help="Seconds per request."),
        click.option("--retries", type=click.IntRange(0, 100), default=4, show_default=True,
                     help="Retries for timeouts, 429 and 5xx, with exponential backoff."),
        click.option("--max-sentences", type=click.IntRange(min=0), default=0,
                     help="Paraphrase at most this many sentences (0 = all)."),
        click.option("--cache", "cache_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="Answer cache (JSONL) [default: ~/.cache/mvtec-ref/paraphrase.jsonl]."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


def _run_paraphrase(
    dataset, base_url, model, temperature, timeout_s, retries, max_sentences, cache_path, quiet
):
    from annotate.paraphrase import ParaphraseConfig, paraphrase_dataset

    if not base_url or not model:
        raise click.UsageError(
            "paraphrasing needs --base-url and --model (the key comes from OPENAI_API_KEY)"
        )
    config = ParaphraseConfig(base_url=base_url, model=model, temperature=temperature, timeout_s=timeout_s,
                              retries=retries, max_sentences=max_sentences)  # fmt: skip
    outcome = paraphrase_dataset(dataset, config, cache_path=cache_path, progress=_progress(quiet))
    shown = ", ".join(f"{k} {v}" for k, v in sorted(outcome.items()))
    unchanged = "" if outcome.get("accepted") else " (no paraphrase accepted; dataset unchanged)"
    click.echo(f"paraphrased {dataset}: {shown or 'nothing to do'}{unchanged}")


@main.command()
@click.option(
    "--source",
    default="mvtec_ad",
    show_default=True,
    help="Built-in: mvtec_ad, visa, mvtec_loco, mvtec_ad2, real_iad, btad, folder (images/ + masks/ "
    "described by ROOT/mvtec-ref.yaml); or a plugin's name (entry-point group mvtec_ref.sources).",
)
@click.option(
    "--root",
    required=True,
    type=click.Path(path_type=Path),
    help="Source dataset root, e.g. ~/data/mvtec_anomaly_detection.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset folder to write (manifest.json + samples.jsonl), replaced atomically; with "
    "--shard, the shard file.",
)
@click.option("--category", "categories", multiple=True, help="Only this category (repeatable).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--strict", is_flag=True, help="Stop at the first problem instead of skipping bad samples.")
@click.option(
    "--workers",
    type=click.IntRange(1, 512),
    default=1,
    show_default=True,
    help="Worker processes; the output is identical for any number.",
)
@click.option(
    "--speck-area",
    type=click.IntRange(min=1),
    default=None,
    help="Components under this many pixels join a nearby region [default: 16].",
)
@click.option(
    "--protocol",
    type=click.Choice(["standard", "open-set", "cross-category"]),
    default="standard",
    show_default=True,
    help="Split protocol (see mvtec_ref/splits.py).",
)
@click.option(
    "--split-ratios",
    default="0.6,0.1,0.3",
    show_default=True,
    callback=lambda ctx, param, value: _split_ratios(value),
    help="train,val,test shares of each category x defect-type stratum: three numbers >= 0 summing to 1.",
)
@click.option(
    "--expressions/--no-expressions",
    default=True,
    show_default=True,
    help="Template expressions of every kind, or only the universal prompt 'anomaly'.",
)
@click.option(
    "--paraphrase/--no-paraphrase",
    "llm",
    default=False,
    help="After building, add LLM paraphrases (needs --base-url, --model, OPENAI_API_KEY).",
)
@_llm_options
@click.option(
    "--reviews",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Apply the decisions of this reviews file (written by mvtec-ref review).",
)
@click.option("--quiet", is_flag=True, help="No progress bar, no per-problem lines.")
@click.option(
    "--shard",
    metavar="K/N",
    callback=lambda ctx, param, value: _shard(value),
    help="Process only slice K of N (1 <= K <= N <= 100000) of the images into the shard FILE --out; "
    "join all N with mvtec-ref merge (see docs/datasets.md, 'Building on a cluster').",
)
@click.option("--force", is_flag=True, help="With --shard: replace --out even if it is not a shard file.")
def build(source, root, out, categories, seed, strict, workers, speck_area, protocol, split_ratios,
          expressions, llm, base_url, model, temperature, timeout_s, retries, max_sentences, cache_path,
          reviews, quiet, shard, force) -> None:  # fmt: skip
    """Build a dataset directory from a source tree."""
    if force and shard is None:
        raise click.UsageError("--force applies to the shard file of --shard; a dataset folder is "
                               "replaced only when mvtec-ref wrote it")  # fmt: skip
    if shard is not None and llm:
        raise click.UsageError("--paraphrase works on a dataset: run it after mvtec-ref merge")
    if llm and (not base_url or not model):
        raise click.UsageError(
            "--paraphrase needs --base-url and --model (the key comes from OPENAI_API_KEY)"
        )
    from dataclasses import replace

    from mvtec_ref.build import BuildConfig, build_dataset
    from mvtec_ref.regions import RegionConfig
    from mvtec_ref.splits import SplitConfig

    regions = RegionConfig() if speck_area is None else replace(RegionConfig(), speck_area=speck_area)
    ratios = split_ratios
    config = BuildConfig(
        source=source,
        categories=tuple(categories),
        seed=seed,
        strict=strict,
        expressions=expressions,
        regions=regions,
        splits=SplitConfig(protocol=protocol, ratios=ratios),
    )
    if shard is not None:
        from mvtec_ref.shards import build_shard

        if reviews is not None:
            raise click.UsageError("--reviews applies to the whole dataset: pass it to mvtec-ref merge")
        header = build_shard(Path(root).expanduser(), out, config, *shard, workers=workers,
                             progress=_progress(quiet), force=force)  # fmt: skip
        click.echo(f"wrote shard {shard[0]}/{shard[1]} to {out}: {header['shard_images']} of "
                   f"{count(header['images'], 'image')}")  # fmt: skip
        return
    result = build_dataset(Path(root).expanduser(), out, config, workers=workers, progress=_progress(quiet),
                           reviews=reviews)  # fmt: skip
    if not quiet:
        for p in result.problems:
            click.echo(f"warning: {p['path']}: {p['problem']} [{p['action']}]", err=True)
    counts = result.manifest["counts"]
    skipped = sum(p["action"] == "skipped" for p in result.problems)
    click.echo(
        f"built {out}: {count(counts['images'], 'image')} ({counts['defect_images']} defective), "
        f"{count(counts['regions'], 'region')}, {count(counts['refs'], 'ref')}; "
        f"{count(len(result.problems), 'problem')}, {count(skipped, 'sample')} skipped"
    )
    if "review" in result.manifest:
        from mvtec_ref.review.summary import review_line

        click.echo(review_line(result.manifest["review"]))
    if llm:
        _run_paraphrase(
            out, base_url, model, temperature, timeout_s, retries, max_sentences, cache_path, quiet
        )


@main.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Dataset folder to write, replaced atomically: the same bytes as a one-process build.",
)
@click.option("--quiet", is_flag=True, help="No per-problem lines and no progress bar.")
@click.option(
    "--reviews",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Apply the decisions of this reviews file (written by mvtec-ref review), as build does.",
)
def merge(shards, out, quiet, reviews) -> None:
    """Join the shard files of build --shard K/N (all N, any order) into a dataset."""
    from mvtec_ref.shards import merge_shards

    result = merge_shards(list(shards), out, reviews=reviews, progress=_progress(quiet))
    if not quiet:
        for p in result.problems:
            click.echo(f"warning: {p['path']}: {p['problem']} [{p['action']}]", err=True)
    counts = result.manifest["counts"]
    click.echo(
        f"merged {count(len(shards), 'shard')} into {out}: {count(counts['images'], 'image')}, "
        f"{count(counts['regions'], 'region')}, {count(counts['refs'], 'ref')}; "
        f"{count(len(result.problems), 'problem')}"
    )
    if "review" in result.manifest:
        from mvtec_ref.review.summary import review_line

        click.echo(review_line(result.manifest["review"]))


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@_llm_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
def paraphrase(dataset, base_url, model, temperature, timeout_s, retries, max_sentences, cache_path, quiet):
    """Add LLM paraphrases of template sentences; each must pass the faithfulness checker."""
    _run_paraphrase(
        dataset, base_url, model, temperature, timeout_s, retries, max_sentences, cache_path, quiet
    )


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--no-files", is_flag=True, help="Do not look for the source image and mask files.")
@click.option("--deep", is_flag=True, help="Re-read every mask and compare it with its regions.")
@click.option(
    "--max-lines", type=click.IntRange(min=0), default=50, show_default=True, help="Problems to print."
)
@click.option(
    "--workers",
    type=click.IntRange(1, 512),
    default=1,
    show_default=True,
    help="Processes reading the files of --deep; the lines are identical for any number.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def validate(dataset: Path, no_files: bool, deep: bool, max_lines: int, workers: int, quiet: bool) -> None:
    """Check a dataset directory: schemas, ids, RLE/area/bbox, refs, files."""
    from mvtec_ref.validate import validate_dataset

    problems = validate_dataset(
        dataset, check_files=not no_files, deep=deep, workers=workers, progress=_progress(quiet)
    )
    if problems:
        for line in problems[:max_lines]:
            click.echo(line, err=True)
        if len(problems) > max_lines:
            click.echo(f"... and {len(problems) - max_lines} more", err=True)
        raise click.ClickException(f"{dataset}: {len(problems)} problems found")
    click.echo(f"{dataset}: valid")


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(["refcoco", "grefcoco", "coco", "jsonl", "hf"]), required=True
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write (replaced atomically).",
)
@click.option(
    "--images",
    type=click.Choice(["link", "copy", "embed", "none"]),
    help="refcoco/grefcoco/coco: symlink (default), copy or leave out the image files. hf: link "
    "(default) stores each row's image as its absolute path (small; loads on this machine only); "
    "embed stores the source file's bytes in every row (loads anywhere, pushable to the Hub; each "
    "image repeats once per sentence); none: no image column.",
)
@click.option(
    "--test-split",
    type=click.Choice(["testA", "testB", "test"]),
    default="testA",
    show_default=True,
    help="Name of the test split in the refcoco/grefcoco layouts (ReLA registers, CRIS keeps testA/testB).",
)
@click.option(
    "--reviewed-only", is_flag=True, help="Only sentences a person accepted or wrote (build --reviews)."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def export(
    dataset: Path, fmt: str, out: Path, images: str | None, test_split: str, reviewed_only: bool, quiet: bool
) -> None:
    """Export a dataset for refer/LAVT/CRIS (refcoco), ReLA (grefcoco), COCO tools, scripts (jsonl) or
    Hugging Face datasets with a Croissant description (hf; needs pip install 'mvtec-ref[hf]')."""
    from mvtec_ref.export import export_dataset
    from mvtec_ref.fileio import check_apart

    check_apart(dataset, out, given_flag="DATASET", inside_ok=True)
    summary = export_dataset(
        dataset, fmt, out, images=images, progress=_progress(quiet), test_split=test_split,
        reviewed_only=reviewed_only,
    )  # fmt: skip
    click.echo(f"exported {dataset} as {fmt} to {out}: {_export_words(summary)}")


def _export_words(summary: dict) -> str:
    """An export's summary in words: "389 refs, 135 annotations, 158 no-target refs; split test as testA"."""
    nouns = {"refs": "ref", "annotations": "annotation", "no_target_refs": "no-target ref", "lines": "line",
             "images": "image", "sentences": "sentence", "rows": "row", "shards": "shard"}  # fmt: skip
    numbers = []
    for key, value in summary.items():
        noun = nouns.get(key, key.replace("_", " ").removesuffix("s"))
        if isinstance(value, int) and not isinstance(value, bool):
            numbers.append(count(value, noun))
        elif key == "rows" and isinstance(value, dict):  # the hf export: rows by split
            each = ", ".join(f"{split} {n:,}" for split, n in value.items())
            numbers.append(f"{count(sum(value.values()), noun)} ({each})")
    groups = [", ".join(numbers)] if numbers else []
    for split, counts in (summary.get("splits") or {}).items():
        groups.append(f"{split}: " + ", ".join(count(n, nouns.get(k, k)) for k, n in counts.items()))
    names = summary.get("split_names") or {}
    renamed = [f"{ours} as {theirs}" for ours, theirs in names.items() if ours != theirs]
    return "; ".join(groups + (["split " + ", ".join(renamed)] if renamed else []))


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for index.html and its files (replaced atomically).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--workers",
    type=click.IntRange(1, 512),
    help="Processes drawing thumbnails [default: one per CPU core, 1 below 500 samples]; "
    "the output is identical for any number.",
)
def report(dataset: Path, out: Path, quiet: bool, workers: int | None) -> None:
    """Write a static HTML report: tables, figures, and a filterable gallery with overlays."""
    from mvtec_ref.fileio import check_apart
    from mvtec_ref.report import build_report

    check_apart(dataset, out, given_flag="DATASET", inside_ok=True)
    result = build_report(dataset, out, progress=_progress(quiet), workers=workers)
    click.echo(
        f"wrote {out / 'index.html'} ({count(result['samples'], 'sample')}, "
        f"{count(result['plots'], 'figure')})"
    )


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--image", "image_id", help="Every ref of this image (its sample id or image_id number).")
@click.option(
    "--sample", type=click.IntRange(min=1), help="This many sentences drawn at random from the dataset."
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the --sample draw."
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the PNGs, show.json and review.tsv (replaced atomically; never a folder of yours).",
)
def show(dataset: Path, image_id: str | None, sample: int | None, seed: int, out: Path) -> None:
    """Draw image + target + sentence(s) as PNGs, with the pixel judge's verdict, to check by eye."""
    from mvtec_ref.show import show_sentences

    if (image_id is None) == (sample is None):
        raise click.UsageError("give exactly one of --image ID and --sample N")
    rows = show_sentences(dataset, out, image=image_id, sample=sample, seed=seed)
    sentences = sum(len(r["sent_ids"]) for r in rows)
    click.echo(
        f"wrote {count(len(rows), 'picture')} ({count(sentences, 'sentence')}) to {out}; "
        "review.tsv lists them"
    )


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the figures as JSON (schemas/stats.schema.json).",
)
@click.option(
    "--plots",
    "plots_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also draw PNG figures into this folder (needs matplotlib; replaced atomically, never a folder "
    "of yours).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_force_option
def stats(dataset: Path, json_path: Path | None, plots_dir: Path | None, quiet: bool, force: bool) -> None:
    """Print regions and expression figures by split, category and defect type."""
    from mvtec_ref.dataset import open_dataset
    from mvtec_ref.fileio import check_apart, check_output_file, check_replaceable
    from mvtec_ref.stats import PLOTS_MARKER, format_tables, summarize

    if json_path is not None:
        check_output_file(json_path, kind="stats", inputs=(dataset,), force=force, flag="--json")
    if plots_dir is not None:
        check_apart(dataset, plots_dir, given_flag="DATASET", out_flag="--plots", inside_ok=True)
        check_replaceable(plots_dir, marker=PLOTS_MARKER)
    summary = summarize(open_dataset(dataset), with_raw=plots_dir is not None, progress=_progress(quiet))
    click.echo(format_tables(summary))
    if json_path is not None:
        from mvtec_ref.stats import save_stats_json

        save_stats_json(summary, json_path)
        click.echo(f"wrote {json_path}")
    if plots_dir is not None:
        from mvtec_ref.stats import save_plots

        for path in save_plots(summary, plots_dir):
            click.echo(f"wrote {path}")


@main.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--reviews",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Decisions file (JSONL, appended to) [default: DATASET.reviews.jsonl beside the dataset, "
    "which survives rebuilds of DATASET].",
)
@click.option("--reviewer", help="Your name, written with each decision [default: the login name].")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0: any free port."
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (others can reach it)."
)
def review(dataset: Path, reviews: Path | None, reviewer: str | None, port: int, host: str) -> None:
    """Accept, reject or rewrite sentences in a local web app (needs pip install 'mvtec-ref[review]')."""
    import getpass

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise click.ClickException("the review app needs: pip install 'mvtec-ref[review]'") from None
    from mvtec_ref.review.app import serve
    from mvtec_ref.review.session import ReviewSession

    dataset = dataset.resolve()  # no "../" in what the page and this command show
    reviews = (reviews or dataset.parent / f"{dataset.name}.reviews.jsonl").resolve()
    if reviews.exists() and not reviews.is_file():
        raise click.BadParameter(f"{reviews} is not a file", param_hint="--reviews")
    session = ReviewSession(dataset, reviews, reviewer or getpass.getuser())
    for line in session.problems:
        click.echo(f"warning: {line}", err=True)

    def ready(url: str) -> None:
        n = len(session.keys)
        click.echo(f"reviewing {count(n, 'sentence')} of {dataset.resolve()}; decisions go to {reviews}")
        click.echo(f"open {url}  (Ctrl+C to stop; every decision is saved as it is made)")

    try:
        serve(session, host=host, port=port, on_ready=ready)
    except OSError as error:
        raise click.ClickException(
            f"cannot listen at {host}:{port}: {error.strerror} (try --port 0)"
        ) from None


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--split", type=click.Choice(["train", "val", "test", "all"]), default="test", show_default=True
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (replaced atomically) [default: DATASET.probes-SPLIT.jsonl beside DATASET].",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Picks the other type of type edits.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_force_option
def probes(dataset: Path, split: str, out: Path | None, seed: int, quiet: bool, force: bool) -> None:
    """Write a contrast set: sentences with one claim edited, each with the regions it now refers to."""
    from mvtec_ref.dataset import open_dataset
    from mvtec_ref.probes import build_probes, check_output, default_path, save_probes

    out = out or default_path(dataset, split)
    check_output(out, inputs=(dataset,), force=force)
    header, items = build_probes(open_dataset(dataset), split=split, seed=seed, progress=_progress(quiet))
    save_probes(header, items, out)
    shown = ", ".join(f"{k} {v}" for k, v in header["edits"].items())
    click.echo(
        f"wrote {count(len(items), 'probe')} of {count(header['sentences'], 'sentence')} ({shown}) to {out}"
    )


@main.command()
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--pred",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder of <sent_id>.png masks, or a JSONL of {sent_id, mask: RLE}.",
)
@click.option(
    "--split", type=click.Choice(["train", "val", "test", "all"]), default="test", show_default=True
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the scores as JSON.")
@click.option("--allow-missing", is_flag=True, help="Score missing predictions as empty masks.")
@click.option(
    "--probes",
    "probes_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Score a contrast set (mvtec-ref probes) instead, on its own split: per edit kind, mIoU, "
    "empty answered empty and sensitivity; --pred holds <probe_id> and <sent_id> masks.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_force_option
def evaluate(
    dataset: Path,
    pred: Path,
    split: str,
    out: Path | None,
    allow_missing: bool,
    probes_path,
    quiet: bool,
    force: bool,
) -> None:
    """Score any model's masks: mIoU, oIoU, gIoU, Prec@0.5-0.9, N-acc, T-acc, by kind/size/category."""
    from mvtec_ref.dataset import open_dataset
    from mvtec_ref.fileio import check_output_file

    if out is not None:
        kind = "metrics" if probes_path is None else "contrast-metrics"
        check_output_file(out, kind=kind, inputs=(dataset, pred, probes_path), force=force)
    data = open_dataset(dataset)
    if probes_path is not None:
        from mvtec_ref.probes import evaluate_probes, format_contrast, save_contrast_json

        result = evaluate_probes(
            data, probes_path, pred, allow_missing=allow_missing, progress=_progress(quiet)
        )
        click.echo(format_contrast(result))
        if out is not None:
            save_contrast_json(result, out)
            click.echo(f"wrote {out}")
        return
    from mvtec_ref.evaluate import evaluate_predictions, format_metrics, save_metrics_json

    result = evaluate_predictions(
        data, pred, split=split, allow_missing=allow_missing, progress=_progress(quiet)
    )
    click.echo(format_metrics(result))
    if out is not None:
        save_metrics_json(result, out)
        click.echo(f"wrote {out}")


def _config_options(f):
    """One ``--option`` per DQFormerConfig field (default: the preset's value), help = its reason."""
    import dataclasses

    from baselines.dqformer.config import RANGES, DQFormerConfig, field_help

    reasons = field_help()
    for field in reversed(dataclasses.fields(DQFormerConfig)):
        flag = "--" + field.name.replace("_", "-")
        default, text = field.default, reasons.get(field.name, "")
        kind = _range_type(RANGES.get(field.name), float if isinstance(default, tuple) else type(default))
        if isinstance(default, bool):
            option = click.option(f"{flag}/--no-{flag[2:]}", field.name, default=None, help=text)
        elif isinstance(default, tuple):
            option = click.option(flag, field.name, type=kind, nargs=len(default), default=None, help=text)
        else:
            option = click.option(flag, field.name, type=kind, default=None, help=text)
        f = option(f)
    return f


def _range_type(spec: tuple | None, kind: type):
    """The click type of a config field with ``RANGES`` entry ``spec`` (its range shows in --help)."""
    if spec is None:
        return kind
    if all(isinstance(x, str) for x in spec):
        return click.Choice(spec)
    low, high, *how = spec
    if kind is int:
        return click.IntRange(low, high)
    return _FiniteFloatRange(low, high, min_open="low-open" in how, max_open="high-open" in how)


@main.command("train-baseline")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Run folder: config, metrics.jsonl, best/last checkpoints, test_metrics.json.",
)
@click.option(
    "--preset",
    type=click.Choice(["tiny", "lite", "paper"]),
    default="lite",
    show_default=True,
    help="tiny: CPU minutes; lite: offline default (EfficientNet-Lite0 + MiniLM); "
    "paper: Swin-B + BERT-base from the hub or local paths.",
)
@click.option(
    "--resume", is_flag=True, help="Continue RUN/last.pt exactly (same RNG state, same next batch)."
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=0),
    default=0,
    help="Also write last.pt every N steps (0: after each epoch only).",
)
@click.option(
    "--test-split",
    type=click.Choice(["test", "val", "train", "none"]),
    default="test",
    show_default=True,
    help="Score the best checkpoint on this split at the end ('none' to skip); checked before training.",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_config_options
def train_baseline(dataset, out, preset, resume, checkpoint_every, test_split, quiet, **fields):
    """Train the DQFormer baseline on a dataset directory (torchrun for several GPUs or nodes)."""
    from baselines.dqformer.config import PRESETS
    from baselines.dqformer.train import check_config, load_resume_config, train
    from mvtec_ref.evaluate import format_metrics

    given = {k: (tuple(v) if isinstance(v, tuple) else v) for k, v in fields.items() if v is not None}
    config = load_resume_config(out, given) if resume else PRESETS[preset]().replace(**given)
    check_config(config)  # every option, before transformers is imported or a weight is looked for
    _quiet_transformers()
    line = train(config, dataset, out, resume=resume, progress=_progress(quiet),
                 checkpoint_every=checkpoint_every,
                 test_split=None if test_split == "none" else test_split)  # fmt: skip
    if "overall" in line:
        click.echo(f"epoch {line['epoch']} {line['split']}:\n{format_metrics(line)}")
    if test_split != "none" and (out / "test_metrics.json").is_file():
        import json

        result = json.loads((out / "test_metrics.json").read_text(encoding="utf-8"))
        click.echo(f"best checkpoint on {test_split}:\n{format_metrics(result)}")
    click.echo(f"wrote {out}")


def _quiet_transformers() -> None:
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


@main.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--image", type=click.Path(dir_okay=False, path_type=Path), help="One image to segment.")
@click.option("--text", "texts", multiple=True, help="Referring expression (repeatable) for --image.")
@click.option(
    "--dataset",
    type=click.Path(file_okay=False, path_type=Path),
    help="Instead of --image: predict every sentence of a split as <sent_id>.png.",
)
@click.option(
    "--split", type=click.Choice(["train", "val", "test", "all"]), default="test", show_default=True
)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for mask.png + overlay.png (or <sent_id>.png files), replaced atomically.",
)
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option(
    "--device",
    callback=lambda ctx, param, value: _device(value),
    help="cpu, cuda, cuda:N or mps [default: cuda when available]",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--probes",
    "probes_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --dataset: also predict this contrast set (mvtec-ref probes) as <probe_id>.png.",
)
def predict(run, image, texts, dataset, split, out, checkpoint, device, quiet, probes_path):
    """Segment with a trained baseline: masks are the argmax of two logits, no threshold."""
    if (image is None) == (dataset is None):
        raise click.UsageError("give either --image with --text, or --dataset")
    if image is not None and not texts:
        raise click.UsageError("--image needs at least one --text")
    if any(not t.strip() for t in texts):
        raise click.ClickException("--text: an expression is empty; say what to segment")
    if dataset is not None:
        from mvtec_ref.dataset import open_dataset

        dataset_path, dataset = dataset, open_dataset(dataset)  # opened and checked once
    if probes_path is not None:
        if dataset is None:
            raise click.UsageError("--probes needs --dataset")
        from mvtec_ref.probes import check_matches, load_probes

        header, _ = load_probes(probes_path)
        check_matches(header, dataset, probes_path)
        if header["split"] != split:
            raise click.UsageError(
                f"{probes_path} holds probes of split {header['split']!r}: pass --split {header['split']}"
            )
    from baselines.dqformer.predict import MARKER, predict_dataset, predict_files
    from mvtec_ref.fileio import check_apart, check_replaceable

    for given, flag in ((run, "RUN"), (dataset and dataset.path, "--dataset"), (image, "--image")):
        if given is not None:
            check_apart(given, out, given_flag=flag, inside_ok=True)
    check_replaceable(out, marker=MARKER)  # before the model is loaded

    _quiet_transformers()
    if image is not None:
        written = predict_files(run, image, list(texts), out, checkpoint=checkpoint, device=device)
    else:
        written = predict_dataset(run, dataset, split, out, checkpoint=checkpoint, device=device,
                                  probes=probes_path, progress=_progress(quiet))  # fmt: skip
        click.echo(f"score them with: mvtec-ref evaluate {dataset_path} --pred {out} --split {split}")
        if probes_path is not None:
            click.echo(
                f"and its probes with: mvtec-ref evaluate {dataset_path} --pred {out} --probes {probes_path}"
            )
    click.echo(f"wrote {count(written, 'mask')} to {out}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


@main.command()
@click.argument("name", required=False)
@click.option("--out", type=click.Path(path_type=Path), help="Folder to extract into [default: data/NAME].")
@click.option("--cache", type=click.Path(path_type=Path), default=Path.home() / ".cache" / "mvtec-ref",
              show_default=True, help="Where archives are downloaded (and resumed).")  # fmt: skip
@click.option("--from", "source_file", type=click.Path(path_type=Path),
              help="An archive you already have: verified and extracted, nothing downloaded.")  # fmt: skip
@click.option("--url", help="Download from this mirror instead (the recorded SHA-256 still applies).")
@click.option(
    "--sha256",
    callback=lambda ctx, param, value: _sha256(value),
    help="Expected SHA-256 of --url's archive, 64 hex digits (required with --url for an unlisted NAME).",
)
@click.option("--list", "show", is_flag=True, help="List the datasets with a recorded archive.")
def download(name, out, cache, source_file, url, sha256, show):
    """Fetch a dataset's official archive (resumable, size- and SHA-256-checked) and extract it safely."""
    from mvtec_ref.download import ARCHIVES, Archive
    from mvtec_ref.download import download as run

    if not name and (source_file or url or sha256 or out):
        raise click.ClickException(
            f"name the dataset, e.g. mvtec-ref download mvtec_ad --from FILE (known: {', '.join(ARCHIVES)})"
        )
    if show or not name:
        for key, a in ARCHIVES.items():
            click.echo(f"{key:12} {a.licence:34} {a.url}")
        return
    archive = ARCHIVES.get(name)
    if url or sha256:
        if archive is None and not sha256:
            raise click.UsageError(f"{name} has no recorded checksum: give --sha256 with --url")
        if archive is None and not url and source_file is None:
            raise click.UsageError(f"{name} has no recorded URL: give --url or --from with --sha256")
        given = url or (archive.url if archive else str(source_file))
        archive = Archive(given, (sha256 or archive.sha256).lower(), None,
                          archive.licence if archive else "", archive.page if archive else "")  # fmt: skip
    bar = None
    if source_file is None:
        from mvtec_ref.progress import progress_bar

        bar = progress_bar(unit="B", unit_scale=True, desc=name, progress=None)

        def progress(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()

    try:
        target = run(name, out or Path("data") / name, cache=cache, source_file=source_file, archive=archive,
                     progress=progress if bar is not None else None)  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"extracted {name} into {target}")
