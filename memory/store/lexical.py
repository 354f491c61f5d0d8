"""The Tantivy BM25 index: derived from the LanceDB table and rebuildable at any time.

Documents are immutable (an update makes a successor with a new id), so keeping the index in
step with the table only needs the two id sets to match. Status and supersession are read
from the table at recall time, never from here.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import tantivy

from memory.textutil import code_terms, query_terms

# Prose fields are stemmed ("painting" finds "paint"); `code` holds identifier parts and joined
# forms, unstemmed (see textutil.code_terms). Field name -> BM25 boost.
STEMMED = ("body", "title", "tags", "entities")
FIELD_BOOSTS: dict[str, float] = {
    "body": 1.0,
    "title": 1.5,
    "tags": 1.5,
    "entities": 1.2,
    "code": 0.6,
}
WRITER_HEAP = 32_000_000
ANALYZER = "memctl_stem"
MAX_QUERY_TERMS = 64
# Function words dropped from queries (never from the index): pronouns, auxiliaries,
# question words, determiners, prepositions. Tantivy's own English list has 33 words and
# keeps "what", "did", "she", "how", "has", so "what did she do" matched every short turn
# holding them. Measured on LoCoMo dev: BM25 turn R@5 0.632 -> 0.686, fused 0.684 -> 0.705.
# "before" and "after" stay: in "run ruff before committing" they carry the meaning.
QUERY_STOPWORDS = (
    "a", "about", "above", "again", "against", "all", "am", "an", "and", "any", "are",
    "as", "at", "be", "because", "been", "being", "below", "between", "both", "but",
    "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for",
    "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself",
    "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself",
    "just", "me", "might", "more", "most", "must", "my", "myself", "no", "nor", "not", "now",
    "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out",
    "over", "own", "same", "shall", "she", "should", "so", "some", "such", "than", "that",
    "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this",
    "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were",
    "what", "when", "where", "which", "while", "who", "whom", "whose", "why", "will", "with",
    "would", "you", "your", "yours", "yourself", "yourselves",
)


def _analyzer(stopwords: bool) -> tantivy.TextAnalyzer:
    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(40))
        .filter(tantivy.Filter.lowercase())
        .filter(tantivy.Filter.ascii_fold())
    )
    if stopwords:  # only on the query side
        builder = builder.filter(tantivy.Filter.custom_stopword(list(QUERY_STOPWORDS)))
    return builder.filter(tantivy.Filter.stemmer("english")).build()


_INDEX_ANALYZER = _analyzer(stopwords=False)
_QUERY_ANALYZER = _analyzer(stopwords=True)


def stemmed_terms(text: str) -> list[str]:
    """Query terms for the stemmed fields, tokenized exactly like the index: never parsed."""
    terms = list(dict.fromkeys(_QUERY_ANALYZER.analyze(text)))
    if not terms:  # a query of stop words only ("who is he") still deserves an answer
        terms = list(dict.fromkeys(_INDEX_ANALYZER.analyze(text)))
    return terms[:MAX_QUERY_TERMS]


@dataclass(frozen=True)
class LexicalDoc:
    id: str
    project: str
    text: str
    title: str | None = None
    tags: Sequence[str] = ()
    entities: Sequence[str] = ()


def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw")
    # The id again as u64 so that listing every id (doctor, recovery) reads a fast column.
    sb.add_unsigned_field("idn", fast=True, indexed=False)
    sb.add_text_field("project", tokenizer_name="raw", index_option="basic")
    for name in FIELD_BOOSTS:
        tokenizer = ANALYZER if name in STEMMED else "default"
        sb.add_text_field(name, tokenizer_name=tokenizer, index_option="freq")
    return sb.build()


def valid_utf8(text: str) -> str:
    """Lone surrogates (undecodable input) cannot cross into Tantivy: make them U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class LexicalIndex:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.schema = _schema()
        path.mkdir(parents=True, exist_ok=True)
        self._index = self._open()
        self._stamp: tuple[int, int, int] | None = None  # meta.json as of the last reload
        # Live documents per project, for the reader at _stamp (a count scans the postings).
        self._counted: tuple[object, dict[str, int]] = (None, {})

    def _open(self) -> tantivy.Index:
        try:
            index = tantivy.Index(self.schema, path=str(self.path), reuse=True)
        except ValueError:
            # An index written with another schema (older memctl): it is derived data,
            # so start it afresh; recovery re-adds every memory from the table.
            shutil.rmtree(self.path, ignore_errors=True)
            self.path.mkdir(parents=True, exist_ok=True)
            index = tantivy.Index(self.schema, path=str(self.path), reuse=True)
        index.register_tokenizer(ANALYZER, _INDEX_ANALYZER)
        return index

    def _refresh(self) -> None:
        """Reload the reader if a commit (by any process) replaced meta.json since the last
        reload: a stat instead of a 0.3 ms reload on every search."""
        try:
            st = os.stat(self.path / "meta.json")
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp is None or stamp != self._stamp:
            self._index.reload()
            self._stamp = stamp

    def _document(self, doc: LexicalDoc) -> tantivy.Document:
        joined = " ".join(part for part in (doc.title or "", doc.text, *doc.entities) if part)
        # from_dict with the schema: plain kwargs would send `idn` as i64 to a u64 column.
        return tantivy.Document.from_dict(
            {
                "id": doc.id,
                "idn": int(doc.id, 16),
                "project": doc.project,
                "body": doc.text,
                "title": doc.title or "",
                "tags": " ".join(doc.tags),
                "entities": " ".join(doc.entities),
                "code": code_terms(joined),
            },
            self.schema,
        )

    def write(
        self,
        add: Iterable[LexicalDoc] = (),
        delete: Iterable[str] = (),
        clear: bool = False,
    ) -> None:
        """Apply deletions then additions in one commit. Caller holds the store's write lock."""
        writer = self._index.writer(WRITER_HEAP, 1)
        try:
            if clear:
                writer.delete_all_documents()
            for doc_id in delete:
                writer.delete_documents_by_term("id", doc_id)
            for doc in add:
                writer.add_document(self._document(doc))
            writer.commit()
            if clear:
                writer.garbage_collect_files()
            writer.wait_merging_threads()
        except BaseException:
            writer.rollback()
            raise
        finally:
            del writer
        self._refresh()  # records the new meta.json, so the next search does not reload again

    def erase(self, docs: Iterable[LexicalDoc]) -> None:
        """Rebuild from `docs` so that erased documents' terms leave the segment files."""
        self.write(add=docs, clear=True)

    def search(self, project: str, text: str, limit: int,
               fields: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """BM25 hits in `project` for the words of `text`. User syntax is never parsed: the
        text is tokenized like the index and turned into term queries, so nothing can raise."""
        if limit <= 0:
            return []
        text = valid_utf8(text)
        boosts = {f: FIELD_BOOSTS[f] for f in fields} if fields else FIELD_BOOSTS
        stems = stemmed_terms(text)
        code = query_terms(text)[:MAX_QUERY_TERMS] if "code" in boosts else []
        should = []
        for field, boost in boosts.items():
            for term in code if field == "code" else stems:
                q = tantivy.Query.term_query(self.schema, field, term)
                should.append((tantivy.Occur.Should, tantivy.Query.boost_query(q, boost)))
        if not should:
            return []
        self._refresh()
        searcher = self._index.searcher()
        query = tantivy.Query.boolean_query(should)
        if self._in_project(searcher, project) < searcher.num_docs:
            # A filter, not a scored term: every score is the text's alone, whether or not the
            # index holds other projects (then, and only then, the filter is needed: 1 ms at
            # 100,000 documents).
            only = tantivy.Query.const_score_query(
                tantivy.Query.term_query(self.schema, "project", project), 0.0)
            query = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, only), (tantivy.Occur.Must, query)])
        hits = searcher.search(query, limit).hits
        if not hits:
            return []
        ids = searcher.fast_field_values("idn", [addr for _, addr in hits])
        return list(zip([f"{idn:016x}" for idn in ids], [float(s) for s, _ in hits], strict=True))

    def rare_terms(self, project: str, field: str, text: str, max_share: float) -> list[str]:
        """The stemmed terms of `text` held in `field` by at most `max_share` of `project`'s
        documents, and by some document of the index. (A term only other projects or deleted
        documents hold passes, and matches nothing in a search of the project.)"""
        text = valid_utf8(text)
        self._refresh()
        searcher = self._index.searcher()
        in_project = tantivy.Query.term_query(self.schema, "project", project)
        total = self._in_project(searcher, project)
        out = []
        for term in stemmed_terms(text):
            # Index-wide, deleted documents included until a merge: at least the project's
            # count, so a rare term needs no count of its own (0.3 ms each at 100,000).
            held = searcher.doc_freq(field, term)
            if held > max_share * total:
                both = tantivy.Query.boolean_query([
                    (tantivy.Occur.Must, in_project),
                    (tantivy.Occur.Must, tantivy.Query.term_query(self.schema, field, term)),
                ])
                held = searcher.search(both, 1, count=True).count
            if 0 < held <= max_share * total:
                out.append(term)
        return out

    def _in_project(self, searcher: tantivy.Searcher, project: str) -> int:
        """Live documents of `project` as `searcher` sees them; counted once per reader."""
        key = (self._stamp, searcher.num_docs)
        if self._counted[0] != key or self._stamp is None:
            self._counted = (key, {})
        counts = self._counted[1]
        if project not in counts:
            query = tantivy.Query.term_query(self.schema, "project", project)
            counts[project] = searcher.search(query, 1, count=True).count or 0
        return counts[project]

    def count(self) -> int:
        self._refresh()
        return int(self._index.searcher().num_docs)

    def all_ids(self) -> set[str]:
        self._refresh()
        searcher = self._index.searcher()
        total = int(searcher.num_docs)
        if total == 0:
            return set()
        hits = searcher.search(tantivy.Query.all_query(), total).hits
        values = searcher.fast_field_values("idn", [addr for _, addr in hits])
        return {f"{v:016x}" for v in values}
