"""LLM paraphrases of template sentences, accepted only when the checker agrees.

Any OpenAI-compatible endpoint (``--base-url``, ``--model``); the key is read from
``OPENAI_API_KEY`` only and is never written anywhere. Each answer is cached on disk,
keyed by (model, request), one JSON line appended and fsynced per answer, so a rerun or
a resumed run never pays twice; a torn last line from a kill is ignored. Timeouts,
connection errors, 429 and 5xx are retried with exponential backoff, then the template
sentence simply stays. An accepted paraphrase is added to its ref as a sentence with
``origin: "llm"`` and ``paraphrase_of`` = the template's ``sent_id``; templates are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from annotate.faithful import OK, check_sentence
from annotate.parse import tokenize
from annotate.vocab import Vocabulary
from mvtec_ref.errors import MvtecRefError

log = logging.getLogger(__name__)

PROMPT_VERSION = "paraphrase-1"
SYSTEM = (
    "You rewrite referring expressions that point at defects in industrial inspection images. "
    "Write one more natural, differently worded expression with exactly the same meaning: keep the "
    "defect type, place, size, count, colour, tone, shape and any 'leftmost'/'largest' words; add no "
    'new facts. Answer with JSON only: {"paraphrase": "..."}'
)


class EndpointError(MvtecRefError):
    """The endpoint refuses us for good (bad key, unknown model): stop, keep what we have."""


def public_url(url: str) -> str:
    """``url`` without user, password and query, the places a key can hide; safe to store or print."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable url>"
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))


@dataclass(frozen=True)
class ParaphraseConfig:
    base_url: str
    model: str
    # Some variety without drifting far from the facts.
    temperature: float = 0.7
    # Seconds per request before it counts as a timeout (then retried).
    timeout_s: float = 30.0
    # Retries after the first try for timeouts, connection errors, 429 and 5xx.
    retries: int = 4
    # First backoff in seconds; doubles each retry, capped at 30 s.
    backoff_s: float = 1.0
    # 0 = every eligible template sentence.
    max_sentences: int = 0

    def as_record(self) -> dict:
        return {"model": self.model, "base_url": public_url(self.base_url), "temperature": self.temperature,
                "prompt_version": PROMPT_VERSION}  # fmt: skip


class ResponseCache:
    """Append-only JSONL of ``{"key", "model", "content"}``; the last answer for a key wins."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries: dict[str, str] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    item = json.loads(line)
                    self.entries[item["key"]] = item["content"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line torn by a kill: that answer is simply asked again

    @staticmethod
    def key(model: str, request: dict) -> str:
        blob = json.dumps({"model": model, **request}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def put(self, key: str, model: str, content: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"key": key, "model": model, "content": content}, ensure_ascii=False) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.entries[key] = content


class Paraphraser:
    def __init__(self, config: ParaphraseConfig, cache: ResponseCache, *, sleep=time.sleep):
        import openai

        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise EndpointError(
                "OPENAI_API_KEY is not set; export the endpoint's key (never pass it as an option)"
            )
        self.config, self.cache, self.sleep = config, cache, sleep
        self.client = openai.OpenAI(
            api_key=key, base_url=config.base_url, timeout=config.timeout_s, max_retries=0
        )
        self.stats: Counter = Counter()

    def ask(self, category_noun: str, sentence: str) -> str | None:
        """The paraphrase text, or None after malformed answers or exhausted retries."""
        request = {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"Object: {category_noun}\nExpression: {sentence}"},
            ],
            "temperature": self.config.temperature,
        }
        key = ResponseCache.key(self.config.model, request)
        content = self.cache.get(key)
        if content is None:
            content = self._call(request)
            if content is None:
                return None
            self.cache.put(key, self.config.model, content)
            self.stats["requests"] += 1
        else:
            self.stats["cached"] += 1
        return _read_answer(content)

    def _call(self, request: dict) -> str | None:
        import openai

        delay = self.config.backoff_s
        for attempt in range(self.config.retries + 1):
            url = public_url(self.config.base_url)
            try:
                response = self.client.chat.completions.create(model=self.config.model, **request)
                content = response.choices[0].message.content or ""
                if not isinstance(content, str):
                    raise TypeError(f"message content is {type(content).__name__}")
                self.stats["answered"] += 1
                return content
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as error:
                raise EndpointError(f"{url}: {type(error).__name__}: {_short(error)}") from None
            except openai.APIConnectionError as error:
                if not self.stats["answered"] and attempt == self.config.retries:
                    # Nothing ever answered: the endpoint is unreachable, not flaky. Stop now
                    # rather than spend every sentence's retries, and write nothing.
                    raise EndpointError(
                        f"{url}: cannot reach the endpoint after {attempt + 1} tries ({_short(error)}); "
                        "is --base-url right and the server up?"
                    ) from None
                if not self._retry(attempt, error, delay):
                    return None
                delay *= 2
            except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError) as error:
                if not self._retry(attempt, error, delay):
                    return None
                delay *= 2
            except openai.APIStatusError as error:  # other 4xx: this request will not work
                self.stats["rejected_request"] += 1
                log.warning("endpoint refused a request: %s", _short(error))
                return None
            except (openai.APIResponseValidationError, ValueError, TypeError, AttributeError, IndexError,
                    KeyError) as error:  # fmt: skip
                # A 200 whose body is not a chat completion (plain text, no choices, a list):
                # every request would get the same, so stop with one line.
                raise EndpointError(
                    f"{url}: answered with a body that is not a chat completion "
                    f"({type(error).__name__}: {_short(error)}); is --base-url an OpenAI-compatible "
                    "/v1 endpoint?"
                ) from None
        return None

    def _retry(self, attempt: int, error: Exception, delay: float) -> bool:
        """Sleep before the next try; False when the retries are spent."""
        self.stats[f"retry_{type(error).__name__}"] += 1
        if attempt == self.config.retries:
            self.stats["gave_up"] += 1
            log.warning("giving up on one sentence after %d tries: %s", attempt + 1, _short(error))
            return False
        self.sleep(min(delay, 30.0))
        return True


def _read_answer(content: str) -> str | None:
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(text)["paraphrase"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
    if not isinstance(value, str):
        return None
    value = " ".join(value.strip().strip(".").split()).lower()
    return value or None


def _short(error: Exception) -> str:
    return str(error).splitlines()[0][:200]


def paraphrase_records(records: list[dict], paraphraser: Paraphraser, vocab: Vocabulary,
                       max_sentences: int = 0, progress: bool | None = None,
                       pixel_judge=None) -> Counter:  # fmt: skip
    """Add accepted paraphrases to ``records`` in place; returns counts by outcome.

    New sentences get ``sent_id`` values after the largest in ``records``, in record order.
    ``pixel_judge(record, text, target) -> rule name or None`` vets them from the pixels too.
    """
    from mvtec_ref.progress import progress_bar

    next_id = 1 + max(
        (s["sent_id"] for r in records for ref in r["refs"] for s in ref["sentences"]), default=0
    )
    todo = [
        (record, ref, s)
        for record in records
        for ref in record["refs"]
        for s in list(ref["sentences"])
        if s["origin"] == "template" and s["text"] != "anomaly"
    ]
    if max_sentences:
        todo = todo[:max_sentences]
    outcome: Counter = Counter()
    for record, ref, sentence in progress_bar(todo, desc="paraphrase", unit="sent", progress=progress):
        text = paraphraser.ask(vocab.noun(record["category"]), sentence["text"])
        if text is None:
            outcome["failed"] += 1
            continue
        if text in {s["text"] for s in ref["sentences"]}:
            outcome["duplicate"] += 1
            continue
        verdict = check_sentence(text, ref["region_ids"], record, vocab)
        if verdict.verdict != OK:
            outcome[f"rejected_{verdict.verdict}"] += 1
            continue
        # no-target paraphrases too: a colour or tone there has nothing to be measured on
        rule = pixel_judge(record, text, ref["region_ids"]) if pixel_judge else None
        if rule is not None:
            outcome[f"rejected_pixel_judge_{rule}"] += 1
            continue
        ref["sentences"].append({"sent_id": next_id, "text": text, "tokens": tokenize(text), "origin": "llm",
                                 "template": None, "paraphrase_of": sentence["sent_id"]})  # fmt: skip
        next_id += 1
        outcome["accepted"] += 1
    return outcome


def _pixel_judge(root: Path, vocab: Vocabulary):
    """``(record, text, target) -> rule or None`` reading each image once (``annotate.pixel_judge``);
    raises MvtecRefError when an image is not where the dataset says."""
    from annotate.pixel_judge import Vetter
    from mvtec_ref.errors import MvtecRefError, SampleError
    from mvtec_ref.regions.mask import decode_image

    vetters: dict = {}

    def judge(record: dict, text: str, target) -> str | None:
        if record["id"] not in vetters:
            vetters.clear()  # sentences of one record come together
            path = root / record["image_path"]
            try:
                image = decode_image(path.read_bytes(), record["image_path"])
            except (OSError, SampleError) as error:
                raise MvtecRefError(f"{path}: cannot read the image for the pixel judge ({error}); "
                                    "moved? rebuild the dataset") from None  # fmt: skip
            vetters[record["id"]] = Vetter(record, image, vocab)
        failure = vetters[record["id"]].first_failure(text, target)
        return None if failure is None else failure.rule

    return judge


def default_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mvtec-ref" / "paraphrase.jsonl"


def paraphrase_dataset(dataset: Path, config: ParaphraseConfig, *, cache_path: Path | None = None,
                       progress: bool | None = None, sleep=time.sleep) -> Counter:  # fmt: skip
    """Paraphrase a dataset directory in place (replaced atomically at the end).

    A run that adds no sentence writes nothing, so the manifest's paraphrase record keeps
    describing the run that made the ``llm`` sentences there. A dataset folder holding files
    ``build`` did not write is refused before any request (they would be lost on replace).
    """
    from annotate.vocab import load_vocabulary
    from mvtec_ref.build import MANIFEST, iter_samples, load_manifest, save_dataset
    from mvtec_ref.fileio import check_replaceable

    manifest = load_manifest(dataset)
    check_replaceable(dataset, marker=MANIFEST)
    records = [record for _, record in iter_samples(dataset)]
    vocab = load_vocabulary(manifest["config"]["refs"].get("vocabulary", "mvtec_ad"))
    paraphraser = Paraphraser(config, ResponseCache(cache_path or default_cache_path()), sleep=sleep)
    judge = _pixel_judge(Path(manifest["source"]["root"]), vocab)
    outcome = paraphrase_records(records, paraphraser, vocab, config.max_sentences, progress, judge)
    outcome.update({k: v for k, v in paraphraser.stats.items() if k in ("requests", "cached")})
    if not outcome["accepted"]:
        return outcome
    manifest["config"]["refs"]["paraphrase"] = {
        **config.as_record(),
        "outcome": dict(sorted(outcome.items())),
    }
    save_dataset(dataset, manifest, records)
    return outcome
