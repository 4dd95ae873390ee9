"""The Vietnamese the accent restorer learns from, all of it shipped offline, with what each is and its licence.

| source | what it gives | licence |
|--------|---------------|---------|
| ``wordfreq``'s ``small_vi`` list (the wordfreq package) | how common about 10,700 syllables are, from large corpora (web, subtitles, Wikipedia, news...) | data CC BY-SA 4.0, code Apache-2.0 |
| underthesea's Viet74K lexicon | about 74,000 words: which syllables go together inside a word | Apache-2.0 (underthesea) |
| underthesea's VLSP 2013 sentences (its POS model's test output) | about 66,000 words of news in running text | Apache-2.0 (underthesea) |
| ``mmtools/text/data/photo_phrases.vi.txt`` | short photo descriptions (people, actions, sports, animals, vehicles, colours, places, food, weather), written by hand for mmtools | Apache-2.0 (mmtools) |
| ``mmtools/text/data/photo_words.vi.txt`` | lists of things, colours, places, people and actions, combined into phrases ("xe hơi màu đỏ", "cô gái đang chạy"), written by hand for mmtools | Apache-2.0 (mmtools) |
| the user's own text files (``$MMTOOLS_HOME/accents/*.txt``, ``restore-accents --learn``) | the user's words and phrasings | the user's |

A source that is not installed is left out (underthesea and wordfreq are dependencies, so that is rare);
``sources()`` says which files a model is built from, so a compiled model is rebuilt when one of them changes.
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mmtools.text.normalize import normalize_text

log = logging.getLogger("mmtools")

_WORD = re.compile(r"[^\W\d_]+")
# Where a sentence's context ends: any punctuation but the hyphen and apostrophe inside words.
_BREAK = re.compile(r"[^\w\s'\-]|\d+")

PHRASES = Path(__file__).with_name("data") / "photo_phrases.vi.txt"
WORDS = Path(__file__).with_name("data") / "photo_words.vi.txt"
_LEXICON = "corpus/data/Viet74K.txt"
_SENTENCES = "pipeline/pos_tag/models/pos_crf_vlsp2013_20230303/test_output.txt"
_WORDFREQ = "data/small_vi.msgpack.gz"
USER_DIR_NAME = "accents"  # under mmtools' home: text files every restorer learns from

# How much each source's counts weigh (a sentence of running text counts 1).
LEXICON_WEIGHT = 0.3  # a lexicon word counts as often as this many occurrences in running text
PHRASE_WEIGHT = 3.0  # a hand-written photo phrase: the queries' own domain
WORDS_WEIGHT = 0.5  # a phrase made from the word lists (there are thousands, each says less)
USER_WEIGHT = 4.0  # the user's own text (and an index's texts: mmtools.text.restore.COLLECTION_WEIGHT)
WORDFREQ_TOKENS = 400_000.0  # wordfreq's frequencies become counts as if from a text of this many syllables


@dataclass(frozen=True)
class Source:
    kind: str  # "wordfreq", "lexicon", "sentences", "phrases", "user"
    path: Path

    def identity(self) -> tuple:
        """What changes when the file does: its path, size and modification time."""
        try:
            stat = self.path.stat()
        except OSError:
            return (self.kind, str(self.path), None)
        return (self.kind, str(self.path), stat.st_size, stat.st_mtime_ns)


def _package_dir(name: str) -> Path | None:
    """Where an installed package lies, without importing it (importing underthesea imports transformers)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def user_dir() -> Path:
    from mmtools.paths import home_dir

    return home_dir() / USER_DIR_NAME


def sources(learn: list[str | os.PathLike[str]] = ()) -> list[Source]:
    """The files the general model learns from, in a fixed order; ``learn``: more of the user's text files."""
    found = []
    wordfreq = _package_dir("wordfreq")
    if wordfreq is not None and (wordfreq / _WORDFREQ).exists():
        found.append(Source("wordfreq", wordfreq / _WORDFREQ))
    underthesea = _package_dir("underthesea")
    if underthesea is not None:
        for kind, relative in (("lexicon", _LEXICON), ("sentences", _SENTENCES)):
            if (underthesea / relative).exists():
                found.append(Source(kind, underthesea / relative))
    found.append(Source("phrases", PHRASES))
    found.append(Source("words", WORDS))
    mine = user_dir()
    if mine.is_dir():
        found.extend(Source("user", path) for path in sorted(mine.glob("*.txt")))
    found.extend(Source("user", Path(path)) for path in learn)
    return found


# ------------------------------------------------------------------------------------------------ reading


def sentences_of(text: str) -> Iterator[list[str]]:
    """Runs of lower-case syllables between punctuation marks (each a context of its own)."""
    for piece in _BREAK.split(normalize_text(text, lowercase=True)):
        words = _WORD.findall(piece)
        if words:
            yield words


def read_text(path: Path) -> str:
    """A user's text file, as UTF-8 (a byte that is not UTF-8 becomes U+FFFD rather than stopping)."""
    with open(path, "rb") as file:
        return file.read().decode("utf-8-sig", errors="replace")


def phrase_lines(path: Path) -> Iterator[str]:
    """Lines of a phrase file, without blank lines and "#" comments."""
    for line in read_text(path).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


def lexicon_words(path: Path) -> Iterator[list[str]]:
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            words = _WORD.findall(normalize_text(line, lowercase=True))
            if words:
                yield words


def tagged_sentences(path: Path) -> Iterator[str]:
    """Sentences of a CoNLL-style file whose first column holds words (syllables parted by spaces)."""
    sentence: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as lines:
        for line in lines:
            token = line.split("\t", 1)[0].strip()
            if not token:
                if sentence:
                    yield " ".join(sentence)
                sentence = []
            else:
                sentence.append(token)
    if sentence:
        yield " ".join(sentence)


def wordfreq_frequencies(path: Path) -> Iterator[tuple[str, float]]:
    """(syllable, frequency) from a wordfreq ``cB`` list: bucket i holds the words at 10^(-i/100)."""
    import msgpack

    with gzip.open(path, "rb") as file:
        buckets = msgpack.load(file, raw=False)
    if not buckets or not isinstance(buckets[0], dict) or buckets[0].get("format") != "cB":
        raise ValueError(f"{path} is not a wordfreq cB list")
    for centibels, words in enumerate(buckets[1:], start=1):
        frequency = 10 ** (-centibels / 100)
        for word in words:
            yield word, frequency


def word_lists(path: Path) -> dict[str, list[str]]:
    """The "[section]" lists of a word-list file."""
    lists: dict[str, list[str]] = {}
    current = None
    for line in phrase_lines(path):
        if line.startswith("[") and line.endswith("]"):
            current = lists.setdefault(line[1:-1].strip(), [])
        elif current is not None:
            current.append(line)
    return lists


def combined_phrases(path: Path) -> Iterator[str]:
    """Phrases made from a word-list file: thing + colour, thing + "màu" + colour, thing + place,
    person + action, person + "đang" + action, person + action + place."""
    lists = word_lists(path)
    things, colours, places = lists.get("things", []), lists.get("colours", []), lists.get("places", [])
    people, actions = lists.get("people", []), lists.get("actions", [])
    for thing in things:
        for colour in colours:
            yield f"{thing} {colour}"
            yield f"{thing} màu {colour}"
        for place in places:
            yield f"{thing} {place}"
    for person in people:
        for action in actions:
            yield f"{person} {action}"
            yield f"{person} đang {action}"
        for place in places:
            yield f"{person} {place}"


def count_source(source: Source, counts) -> None:
    """Add one source's n-grams to ``counts`` (an ``NgramCounts``), with that source's weight."""
    if source.kind == "wordfreq":
        for word, frequency in wordfreq_frequencies(source.path):
            syllables = _WORD.findall(normalize_text(word, lowercase=True))
            if len(syllables) == 1:
                counts.unigrams[syllables[0]] += frequency * WORDFREQ_TOKENS
    elif source.kind == "lexicon":
        for words in lexicon_words(source.path):
            counts.add_sentence(words, LEXICON_WEIGHT, edges=False)  # a word: only its inner pairs count
    elif source.kind == "sentences":
        for text in tagged_sentences(source.path):
            for words in sentences_of(text):
                counts.add_sentence(words)
    elif source.kind == "words":
        for line in combined_phrases(source.path):
            counts.add_sentence(line.split(), WORDS_WEIGHT)
    else:
        weight = PHRASE_WEIGHT if source.kind == "phrases" else USER_WEIGHT
        for line in phrase_lines(source.path):
            for words in sentences_of(line):
                counts.add_sentence(words, weight)
