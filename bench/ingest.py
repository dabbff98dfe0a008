"""Benchmark ingest on this machine's CPU and write bench/results/ingest-cpu.json.

(a) a large real codebase (the .py files of installed torch + transformers, ~5,000 files):
    time to a 64k context, cold (empty parse cache) and warm (cache filled), the same
    question and another one; medians of 3 (the machine is shared);
(b) PDFs: pages per second to sections and text, medians of 5. Real ones are manuals that
    Debian packages install (valgrind: its 397-page user manual, DocBook through Apache FOP;
    nettle-dev: the 111-page Nettle manual, Texinfo through pdfTeX; libtasn1-doc: 36
    pages), gunzipped into the temporary folder first; the Valgrind manual once more with its
    outline removed, so sections come from font sizes; and a 177-page book generated here
    from the standard library's pydoc text (running header, page numbers, outline);
(c) retrieval: bench/retrieval_questions.json over the standard library: how often the
    file holding the answer is packed (its text, not just its signatures) at 8k/16k/64k,
    ranked vs the naive path-order packer.

Token counts use the model's own tokenizer.json (the CPU default model's, from the model
cache; pass --tokenizer to choose another).

    python bench/ingest.py [--tokenizer PATH] [--skip-large]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.metadata
import json
import os
import platform
import pydoc
import resource
import shutil
import statistics
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pymupdf
from tokenizers import Tokenizer

from nsa_assist.ingest.context import CountTokens
from nsa_assist.ingest.pack import PackConfig, pack_repository
from nsa_assist.ingest.parse_cache import ParseCache, map_repository
from nsa_assist.ingest.path_order import pack_in_path_order
from nsa_assist.ingest.pdf import read_pdf
from nsa_assist.ingest.pipeline import cached_rank_inputs, collector_paused, remembered_counts
from nsa_assist.ingest.rank import RankWeights, rank
from nsa_assist.ingest.terms import parse_question
from nsa_assist.ingest.walk import WalkConfig, walk_source

HERE = Path(__file__).parent
BUDGETS = (8_192, 16_384, 65_536)
LARGE_PACKAGES = ("torch", "transformers")
LARGE_QUESTION = "how is the attention mask applied in the model's forward pass"
OTHER_QUESTION = "where are learning rate schedulers for the optimizer defined"
COLD_RUNS = 3
PDF_PAGES = 150
PDF_MODULES = (
    "json", "email", "http.client", "argparse", "collections", "pathlib", "asyncio",
    "subprocess", "logging", "unittest", "urllib.parse", "tarfile", "zipfile", "shutil",
    "functools", "itertools", "dataclasses", "enum", "typing", "re", "datetime", "decimal",
)  # fmt: skip
PDF_RUNS = 5
REAL_PDFS = {
    "valgrind-manual": (
        Path("/usr/share/doc/valgrind/valgrind_manual.pdf.gz"),
        "Valgrind user manual (DocBook, Apache FOP), Debian package valgrind",
    ),
    "nettle-manual": (
        Path("/usr/share/doc/nettle-dev/nettle.pdf.gz"),
        "Nettle manual (Texinfo, pdfTeX), Debian package nettle-dev",
    ),
    "libtasn1-manual": (
        Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf"),
        "libtasn1 manual (pdfTeX), Debian package libtasn1-doc",
    ),
}
TEXT_KINDS = frozenset({"file", "definition", "doc"})


def main() -> None:
    args = _arguments()
    count_tokens, tokenizer_name = _counter(args.tokenizer)
    workers = os.cpu_count() or 1
    results: dict = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "device": f"cpu: {platform.processor() or platform.machine()}, {workers} cores",
        "versions": _versions(),
        "tokenizer": tokenizer_name,
        "load_average_1_5_15": {"start": os.getloadavg()},
    }
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    with tempfile.TemporaryDirectory(prefix="nsa-bench-") as tmp:
        if not args.skip_large:
            results["large_codebase"] = _large(Path(tmp), count_tokens, workers)
        results["pdf"] = _pdfs(Path(tmp))
        results["retrieval"] = _retrieval(Path(tmp), stdlib, count_tokens, workers)
    results["load_average_1_5_15"]["end"] = os.getloadavg()  # the machine is shared
    _print_tables(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer", type=Path, default=None)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "ingest-cpu.json")
    return parser.parse_args()


def _counter(path: Path | None) -> tuple[Counter, str]:
    if path is None:
        home = Path(os.environ.get("NSA_HOME") or "~/.cache/nsa-assist").expanduser()
        found = sorted((home / "models").glob("qwen2.5-coder-0.5b*.tokenizer.json"))
        if not found:
            sys.exit("no tokenizer.json in the model cache: run `nsa models pull` or --tokenizer")
        path = found[0]
    tokenizer = Tokenizer.from_file(str(path))
    identity = f"{path.name} {hashlib.sha256(path.read_bytes()).hexdigest()}"
    return Counter(tokenizer, identity), path.name


@dataclass(frozen=True)
class Counter:
    """The model tokenizer's count, and its name for the parse cache's token counts."""

    tokenizer: Tokenizer
    identity: str

    def __call__(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)


def _versions() -> dict[str, str]:
    names = ("tree-sitter", "tree-sitter-language-pack", "pymupdf", "networkx", "tokenizers")
    found = {name: importlib.metadata.version(name) for name in names}
    return {"python": platform.python_version(), **found}


def _link_tree(sources: list[tuple[Path, str]], target: Path, suffixes: tuple[str, ...]) -> int:
    """Mirror files (hard links where possible) so a benchmark corpus is one folder."""
    count = 0
    for source, prefix in sources:
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(source)
            if "site-packages" in rel.parts or not path.is_file() or path.is_symlink():
                continue
            if suffixes and path.suffix not in suffixes:
                continue
            destination = target / prefix / rel
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, destination)
            except OSError:
                shutil.copyfile(path, destination)
            count += 1
    return count


def _timed_pipeline(
    root: Path, question: str, budget: int, cache: Path, count_tokens: Counter, workers: int
) -> dict:
    """Walk, parse (through the cache), rank and pack once, timing each stage (the stages
    of `ingest_repository`, with its collector paused; rank includes building or loading
    its question-independent inputs)."""
    with collector_paused():
        return _timed_stages(root, question, budget, cache, count_tokens, workers)


def _timed_stages(
    root: Path, question: str, budget: int, cache: Path, count_tokens: Counter, workers: int
) -> dict:
    times: dict[str, float] = {}
    cpu_start = time.process_time()
    children_start = _children_cpu()
    start = time.perf_counter()
    parse_cache = ParseCache(cache)
    walked = walk_source(root, WalkConfig(use_git=False), parse_cache)
    times["walk"] = time.perf_counter() - start
    mark = time.perf_counter()
    mapped = map_repository(walked.files, parse_cache, workers)
    times["parse"] = time.perf_counter() - mark
    mark = time.perf_counter()
    weights = RankWeights()
    inputs = cached_rank_inputs(walked.files, mapped, weights, parse_cache)
    ranking = rank(walked.files, mapped.definitions, parse_question(question), inputs, weights)
    times["rank"] = time.perf_counter() - mark
    mark = time.perf_counter()
    memo = remembered_counts(count_tokens, count_tokens.identity, parse_cache)
    context = pack_repository(walked, mapped.definitions, ranking, PackConfig(budget), memo)
    memo.flush()
    parse_cache.close()
    times["pack"] = time.perf_counter() - mark
    times["total"] = time.perf_counter() - start
    times["cpu_this_process"] = time.process_time() - cpu_start
    # CPU seconds of the parse worker processes: with the main process's, what the run costs
    # whatever else the shared machine is doing (wall time on 2 idle cores is about half)
    times["cpu_parse_workers"] = _children_cpu() - children_start
    size = sum(file.stamp.size for file in walked.files)  # bytes: texts may not be decoded
    return {
        "files": len(walked.files),
        "megabytes": round(size / 1e6, 1),
        "context_tokens": context.tokens,
        "seconds": {k: round(v, 3) for k, v in times.items()},
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _large(tmp: Path, count_tokens: Counter, workers: int) -> dict:
    site = Path(sysconfig.get_paths()["purelib"])
    root = tmp / "large"
    sources = [(site / name, name) for name in LARGE_PACKAGES if (site / name).is_dir()]
    linked = _link_tree(sources, root, (".py",))
    colds, warms, others = [], [], []
    for number in range(COLD_RUNS):  # the machine is shared: several cold runs, median
        cache = tmp / f"large-cache-{number}"
        colds.append(_timed_pipeline(root, LARGE_QUESTION, 65_536, cache, count_tokens, workers))
        print(f"  large codebase cold: {colds[-1]['seconds']}", flush=True)
        warms.append(_timed_pipeline(root, LARGE_QUESTION, 65_536, cache, count_tokens, workers))
        # a second question about the same repository: what the parse cache is for
        others.append(_timed_pipeline(root, OTHER_QUESTION, 65_536, cache, count_tokens, workers))
        print(f"  warm: {warms[-1]['seconds']}, other question: {others[-1]['seconds']}")
    return {
        "corpus": f"*.py of {', '.join(name for _, name in sources)} ({linked} files)",
        "budget": 65_536,
        "workers": workers,
        "runs": COLD_RUNS,
        "cold_median": _median_run(colds),
        "warm_median": _median_run(warms),
        "warm_other_question_median": _median_run(others),
        "cold_totals": [run["seconds"]["total"] for run in colds],
        "warm_totals": [run["seconds"]["total"] for run in warms + others],
    }


def _median_run(runs: list[dict]) -> dict:
    """The run whose total is the median (stages stay those of one real run)."""
    ordered = sorted(runs, key=lambda run: run["seconds"]["total"])
    return ordered[len(ordered) // 2]


def _pdfs(tmp: Path) -> dict:
    found = {}
    for name, (shipped, what) in REAL_PDFS.items():
        if not shipped.is_file():
            print(f"  {shipped} is not installed here: {name} skipped")
            continue
        path = tmp / shipped.name.removesuffix(".gz")
        opener = gzip.open if shipped.suffix == ".gz" else open
        with opener(shipped, "rb") as source:
            path.write_bytes(source.read())
        found[name] = _pdf_speed(path, what)
        if name == "valgrind-manual":
            bare = _without_outline(path, tmp / "valgrind-manual-no-outline.pdf")
            found["valgrind-no-toc"] = _pdf_speed(bare, what + ", outline removed")
    generated = _make_pdf(tmp / "stdlib-docs.pdf")
    found["generated"] = _pdf_speed(generated, "150+ pages of pydoc text of stdlib modules")
    return found


def _without_outline(path: Path, target: Path) -> Path:
    """The same PDF with no outline, so its sections must come from font sizes."""
    with pymupdf.open(path) as document:
        document.set_toc([])
        document.save(target)
    return target


def _pdf_speed(path: Path, what: str) -> dict:
    seconds = []
    cpu_seconds = []
    for _ in range(PDF_RUNS):
        start, cpu_start = time.perf_counter(), time.process_time()
        document = read_pdf(path)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - cpu_start)
    pages = len(document.pages)
    return {
        "what": what,
        "pages": pages,
        "sections": len(document.sections),
        "characters": sum(len(page.text) for page in document.pages),
        "pages_per_second_median": round(pages / statistics.median(seconds), 1),
        "pages_per_second_first": round(pages / seconds[0], 1),
        "pages_per_cpu_second_median": round(pages / statistics.median(cpu_seconds), 1),
    }


def _make_pdf(path: Path) -> Path:
    """A book of pydoc text: chapters with a TOC, running header, page numbers, wrapped text."""
    document = pymupdf.open()
    outline: list[list] = []
    for module_name in PDF_MODULES:
        module = pydoc.locate(module_name)
        text = pydoc.plain(pydoc.render_doc(module, renderer=pydoc.plaintext))
        outline.append([1, f"The {module_name} module", document.page_count + 1])
        _write_chapter(document, module_name, text)
        if document.page_count >= PDF_PAGES:
            break
    for number, page in enumerate(document, start=1):
        page.insert_text((72, 36), "Python Standard Library — Reference Excerpts", fontsize=8)
        page.insert_text((300, 810), str(number), fontsize=8)
    document.set_toc(outline)
    document.save(path)
    return path


def _write_chapter(document: pymupdf.Document, title: str, text: str) -> None:
    lines = [line.rstrip() for line in text.splitlines()]
    page = document.new_page(width=595, height=842)
    page.insert_text((72, 90), f"The {title} module", fontsize=18)
    y = 120.0
    for line in lines:
        for piece in _wrap(line, 95):
            if y > 780:
                page = document.new_page(width=595, height=842)
                y = 72.0
            page.insert_text((72, y), piece, fontsize=9, fontname="cour")
            y += 11.0
        if not line:
            y += 4.0


def _wrap(line: str, width: int) -> list[str]:
    return [line[i : i + width] for i in range(0, len(line), width)] or [""]


def _retrieval(tmp: Path, stdlib: Path, count_tokens: CountTokens, workers: int) -> dict:
    labelled = json.loads((HERE / "retrieval_questions.json").read_text())["questions"]
    root = tmp / "stdlib"
    _link_tree([(stdlib, "")], root, ())
    walked = walk_source(root, WalkConfig(use_git=False))
    cache = ParseCache(tmp / "stdlib-cache")
    mapped = map_repository(walked.files, cache, workers)
    inputs = cached_rank_inputs(walked.files, mapped, RankWeights(), cache)
    cache.close()
    definitions = mapped.definitions
    ranked_hits = {budget: 0 for budget in BUDGETS}
    mentioned = {budget: 0 for budget in BUDGETS}
    misses: dict[int, list[str]] = {budget: [] for budget in BUDGETS}
    for number, item in enumerate(labelled, start=1):
        ranking = rank(walked.files, definitions, parse_question(item["question"]), inputs)
        position = next(i for i, (p, _) in enumerate(ranking.files) if p == item["answer_file"])
        print(f"  [{number}/{len(labelled)}] rank {position}: {item['answer_file']}", flush=True)
        for budget in BUDGETS:
            config = PackConfig(budget)
            context = pack_repository(walked, definitions, ranking, config, count_tokens)
            texts = {c.path for c in context.chunks if c.kind in TEXT_KINDS}
            listed = {c.path for c in context.chunks} | _map_paths(context.text)
            ranked_hits[budget] += item["answer_file"] in texts
            mentioned[budget] += item["answer_file"] in texts | listed
            if item["answer_file"] not in texts:
                misses[budget].append(item["answer_file"])
    naive = {}
    for budget in BUDGETS:
        packed = {c.path for c in pack_in_path_order(root, budget, count_tokens).chunks}
        naive[budget] = sum(item["answer_file"] in packed for item in labelled)
    total = len(labelled)
    return {
        "corpus": f"{stdlib} without site-packages: {len(walked.files)} text files",
        "questions": total,
        "by_budget": {
            str(budget): {
                "ranked_text_hits": ranked_hits[budget],
                "ranked_text_rate": round(ranked_hits[budget] / total, 3),
                "ranked_text_or_signatures_rate": round(mentioned[budget] / total, 3),
                "path_order_rate": round(naive[budget] / total, 3),
                "ranked_misses": misses[budget],
            }
            for budget in BUDGETS
        },
    }


def _map_paths(text: str) -> set[str]:
    """Paths named in the repo map section (lines `path:` that end a file header)."""
    return {line[:-1] for line in text.splitlines() if line.endswith(".py:") and " " not in line}


def _print_tables(results: dict) -> None:
    if "large_codebase" in results:
        large = results["large_codebase"]
        print(f"\n(a) {large['corpus']} -> 64k context")
        for name in ("cold_median", "warm_median", "warm_other_question_median"):
            run = large[name]
            stages = ", ".join(f"{k} {v:.2f}" for k, v in run["seconds"].items())
            print(f"  {name:27} {run['files']} files, {run['megabytes']} MB: {stages} s")
    print(f"\n(b) PDF pages/s (median of {PDF_RUNS})")
    for name, run in results["pdf"].items():
        rate, cpu = run["pages_per_second_median"], run["pages_per_cpu_second_median"]
        print(
            f"  {name:16} {run['pages']} pages, {run['sections']} sections: {rate} pages/s "
            f"(wall), {cpu} pages per CPU second"
        )
    retrieval = results["retrieval"]
    print(f"\n(c) retrieval, {retrieval['questions']} questions: answer file's text in the context")
    print(f"  {'budget':>8} {'ranked':>8} {'+signatures':>12} {'path order':>11}")
    for budget, row in retrieval["by_budget"].items():
        print(
            f"  {budget:>8} {row['ranked_text_rate']:>8.0%} "
            f"{row['ranked_text_or_signatures_rate']:>12.0%} {row['path_order_rate']:>11.0%}"
        )


if __name__ == "__main__":
    main()
