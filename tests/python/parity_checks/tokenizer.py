"""Tokenizer parity (issue 6, part 3): the tokenizer files `berthash export` writes, as loaded by
transformers' AutoTokenizer, against the repo's Rust tokenizer and the reference library.

- Rust side: `berthash tokenize` (the data crate's TokenizerHandle, the path training uses for
  single texts; pairs through the tokenizers crate) on the exported tokenizer.json, for every
  text below that fits its one-text-per-line input (no newline; no tab in pairs). Binaries
  without the subcommand get a SKIP row, and the expected-ids fixture below stands in.
  With the shared GLUE data (`$BERTHASH_SHARED/data/glue`), also every train and dev example of
  SST-2 and MRPC: the text the glue module fine-tunes both sides on.
- The expected-ids fixture the data crate ships (crates/berthash-data/tests/fixtures/
  tokenizer_expected_ids.json, texts + ids made by the reference `tokenizers` library from the
  same tokenizer.json): singles (edge cases + real text), pairs with token types, truncated
  pairs (longest_first).
- Real sentences: every SST-2 sentence and MRPC pair of tests/fixtures/glue, plus paragraphs of
  the data/sample parquet files when pyarrow is installed (scripts/parity.sh installs it),
  AutoTokenizer vs the reference `tokenizers` library loading the same tokenizer.json: plain,
  and as GLUE batches (pairs, truncation + padding to 128, as fine-tuning feeds them).
- The pure-Python WordPiece tokenizer built from the exported vocab.txt (BertTokenizer slow in
  transformers 4.x, BertTokenizerLegacy in 5.x) on the same sentences: checks vocab.txt and
  tokenizer_config.json (lower casing, accents, Chinese characters) agree with tokenizer.json.

Pairs are encoded with the batch form tok([a], [b]) (as run_glue calls the tokenizer): the
single-call form tok(a, "") drops an empty second text, which an INFO row points out.
"""

import json

from .common import GOLDEN_TINY, quiet_load

NAME = "tokenizer"
TITLE = "AutoTokenizer of an export vs berthash tokenize, the data-crate fixture, the tokenizers library, slow WordPiece"

FIXTURE = "crates/berthash-data/tests/fixtures/tokenizer_expected_ids.json"
TOKENIZER_DIR = "data/tokenizer/bert-base-uncased"
GLUE_MAX_LENGTH = 128
PARQUET_TEXTS = 150  # per parquet sample file


def glue_texts(repo):
    """(singles, pairs) from the GLUE tsv fixtures: SST-2 sentences, MRPC string pairs."""
    singles, pairs = [], []
    for split in ("train", "dev"):
        lines = (repo / f"tests/fixtures/glue/SST-2/{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
        singles += [line.split("\t")[0] for line in lines if line]
        lines = (repo / f"tests/fixtures/glue/MRPC/{split}.tsv").read_text(encoding="utf-8-sig").splitlines()[1:]
        pairs += [(r[3], r[4]) for r in (line.split("\t") for line in lines if line) if len(r) >= 5]
    return singles, pairs


def parquet_texts(repo):
    """Paragraphs of data/sample/*/*.parquet (the first PARQUET_TEXTS non-empty lines of each
    file's texts), or None without pyarrow."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return None
    texts = []
    for path in sorted((repo / "data" / "sample").glob("*/*.parquet")):
        lines = []
        for doc in pq.read_table(path, columns=["text"]).column("text").to_pylist():
            lines += [line for line in (doc or "").split("\n") if line.strip()]
            if len(lines) >= PARQUET_TEXTS:
                break
        texts += lines[:PARQUET_TEXTS]
    return texts


def has_tokenize(berthash):
    return any(line.split()[:1] == ["tokenize"] for line in berthash.help_text().splitlines())


def berthash_tokenize(ctx, workdir, tokenizer_json, texts, pairs=False):
    """Runs `berthash tokenize` on texts (str, or (a, b) with pairs=True); returns one result per
    text (ids, or (ids, type ids)), None for texts its line format cannot carry."""
    def fits(t):
        parts = t if pairs else (t,)
        return all("\n" not in p and "\r" not in p and (not pairs or "\t" not in p) for p in parts)

    usable = [t for t in texts if fits(t)]
    path = workdir / ("pairs.txt" if pairs else "singles.txt")
    path.write_text("".join(("\t".join(t) if pairs else t) + "\n" for t in usable), encoding="utf-8")
    args = ["tokenize", "--input", path, "--tokenizer", tokenizer_json] + (["--pairs"] if pairs else [])
    lines = ctx.berthash(*args).stdout.splitlines()
    if len(lines) != len(usable):
        raise RuntimeError(f"berthash tokenize printed {len(lines)} lines for {len(usable)} texts")
    results = iter(json.loads(line) for line in lines)
    out = []
    for t in texts:
        if not fits(t):
            out.append(None)
            continue
        r = next(results)
        out.append((r["input_ids"], r["token_type_ids"]) if pairs else r)
    return out


def check_berthash_tokenize(ctx, report, tok, exported, singles, pairs, sources):
    workdir = ctx.scratch(NAME, "rust")
    tokenizer_json = exported / "tokenizer.json"
    ours = berthash_tokenize(ctx, workdir, tokenizer_json, singles)
    bad, skipped = [], 0
    for text, ids in zip(singles, ours):
        if ids is None:
            skipped += 1
        elif ids != tok(text)["input_ids"]:
            bad.append((text, ids, tok(text)["input_ids"]))
    report.add(f"singles ({sources[0]})", not bad and len(singles) > skipped,
               f"{len(singles) - skipped - len(bad)}/{len(singles) - skipped} identical", "AutoTokenizer (export)",
               "exact", mismatch_note(bad, len(singles) - skipped)
               or (f"{skipped} texts with line breaks left out (one text per line)" if skipped else ""))

    ours = berthash_tokenize(ctx, workdir, tokenizer_json, pairs, pairs=True)
    enc = tok([a for a, _ in pairs], [b for _, b in pairs])
    bad, skipped = [], 0
    for i, ((a, b), got) in enumerate(zip(pairs, ours)):
        if got is None:
            skipped += 1
        elif got != (enc["input_ids"][i], enc["token_type_ids"][i]):
            bad.append((f"{a} || {b}", got[0], enc["input_ids"][i]))
    report.add(f"--pairs ({sources[1]})", not bad and len(pairs) > skipped,
               f"{len(pairs) - skipped - len(bad)}/{len(pairs) - skipped} identical", "AutoTokenizer (export)",
               "exact", mismatch_note(bad, len(pairs) - skipped)
               or ("ids + token types" + (f"; {skipped} pairs with tabs/line breaks left out" if skipped else "")))


def check_shared_glue(ctx, report, tok, exported):
    """Every SST-2 sentence and MRPC pair of the full GLUE sets (train + dev), the text the glue
    module fine-tunes both sides on, when the shared data has them."""
    from .glue import TASKS, examples, shared_glue

    glue = shared_glue()
    if not all((glue / folder / f"{split}.tsv").is_file() for folder, _, _ in TASKS for split in ("train", "dev")):
        report.skip("full GLUE train + dev sets", f"no GLUE data at {glue} (set BERTHASH_SHARED)")
        return
    workdir = ctx.scratch(NAME, "glue")
    for folder, task, _ in TASKS:
        texts = [t for split in ("train", "dev") for t in examples(glue / folder / f"{split}.tsv", task)[0]]
        pairs = len(texts[0]) == 2
        ours = berthash_tokenize(ctx, workdir, exported / "tokenizer.json", texts if pairs else [t[0] for t in texts],
                                 pairs=pairs)
        enc = tok(*map(list, zip(*texts)))
        bad = []
        for i, (text, got) in enumerate(zip(texts, ours)):
            want = (enc["input_ids"][i], enc["token_type_ids"][i]) if pairs else enc["input_ids"][i]
            if got != want:
                bad.append((" || ".join(text), got[0] if pairs and got else got, enc["input_ids"][i]))
        longest = max(len(ids) for ids in enc["input_ids"])
        add_count(report, f"{folder} train + dev, every {'pair' if pairs else 'sentence'}", "AutoTokenizer (export)",
                  bad, len(texts), f"{glue}; longest {longest} tokens" + ("; ids + token types" if pairs else ""))


def mismatch_note(mismatches, total):
    if not mismatches:
        return ""
    first = mismatches[0]
    return f"{len(mismatches)}/{total} differ; first: {first[0][:60]!r}: {first[1][:12]} != {first[2][:12]}"


def add_count(report, check, reference, mismatches, total, note=""):
    report.add(check, not mismatches and total > 0, f"{total - len(mismatches)}/{total} identical", reference,
               "exact", mismatch_note(mismatches, total) or note)


def check_fixture(report, tok, repo):
    path = repo / FIXTURE
    if not path.exists():
        report.skip("Rust fixture", f"{FIXTURE} not found")
        return
    fixture = json.loads(path.read_text(encoding="utf-8"))
    reference = f"fixture (tokenizers {fixture.get('tokenizers_version', '?')})"
    fixture_tok = repo / fixture.get("tokenizer", TOKENIZER_DIR + "/tokenizer.json")
    same_file = fixture_tok.exists() and fixture_tok.read_bytes() == (repo / TOKENIZER_DIR / "tokenizer.json").read_bytes()

    bad = []
    for item in fixture["singles"]:
        ids = tok(item["text"])["input_ids"]
        if ids != item["ids"]:
            bad.append((item["text"], ids, item["ids"]))
    add_count(report, "fixture singles", reference, bad, len(fixture["singles"]),
              "edge cases (accents, CJK, emoji, controls, long words) + SST-2/books/wikipedia"
              + ("" if same_file else "; WARNING: fixture made from another tokenizer.json"))

    # Pairs go through the batch form tok([a], [b]), as run_glue calls it: the single-call form
    # tok(a, "") drops an empty second text (transformers tests `if text_pair`), see below.
    def encode(a, b, **kwargs):
        enc = tok([a], None if b is None else [b], **kwargs)
        return enc["input_ids"][0], enc["token_type_ids"][0]

    bad, single_call_differs = [], []
    for item in fixture["pairs"]:
        ids, types = encode(item["a"], item["b"])
        if ids != item["ids"] or types != item["type_ids"]:
            bad.append((f"{item['a']} || {item['b']}", ids, item["ids"]))
        if tok(item["a"], item["b"])["input_ids"] != item["ids"]:
            single_call_differs.append(repr((item["a"][:20], item["b"][:20])))
    add_count(report, "fixture pairs (ids + token types)", reference, bad, len(fixture["pairs"]),
              "batch form tok([a], [b])")

    bad = []
    for item in fixture["truncated_pairs"]:
        if item["b"] is None:
            ids, types = encode(item["a"], None, truncation=True, max_length=item["max_length"])
        else:
            ids, types = encode(item["a"], item["b"], truncation="longest_first", max_length=item["max_length"])
        if ids != item["ids"] or types != item["type_ids"]:
            bad.append((f"{item['a']} || {item['b']} @{item['max_length']}", ids, item["ids"]))
    add_count(report, "fixture truncated pairs (longest_first, 8-32)", reference, bad, len(fixture["truncated_pairs"]),
              "batch form tok([a], [b])")
    if single_call_differs:
        report.info("fixture pairs, single-call form tok(a, b)",
                    f"{len(single_call_differs)}/{len(fixture['pairs'])} differ: {', '.join(single_call_differs)}: "
                    "transformers treats text_pair='' as no pair ([CLS] a [SEP]) where tokenizers and the batch "
                    "form give [CLS] a [SEP] [SEP]; a transformers API quirk, not a tokenizer-file difference")


def rust_side_note(ctx):
    """Where the Rust tokenizer is compared with the same fixture, for the report."""
    users = [p.relative_to(ctx.repo) for p in (ctx.repo / "crates").rglob("*.rs")
             if "tokenizer_expected_ids" in p.read_text(encoding="utf-8", errors="replace")]
    if users:
        return "the Rust tokenizer is held to the same fixture by " + ", ".join(map(str, users))
    return "no Rust test reads this fixture yet (none found under crates/)"


def check_reference_library(report, tok, repo, singles, pairs, extra):
    import tokenizers

    ref = tokenizers.Tokenizer.from_file(str(repo / TOKENIZER_DIR / "tokenizer.json"))
    name = f"tokenizers {tokenizers.__version__} (tokenizer.json)"
    texts = singles + (extra or [])
    bad = []
    for text in texts:
        ids = tok(text)["input_ids"]
        want = ref.encode(text).ids
        if ids != want:
            bad.append((text, ids, want))
    add_count(report, f"real sentences ({len(singles)} SST-2" + (f" + {len(extra)} data/sample" if extra else "") + ")",
              name, bad, len(texts))

    bad = []
    for a, b in pairs:
        enc = tok(a, b)
        want = ref.encode(a, b)
        if enc["input_ids"] != want.ids or enc["token_type_ids"] != want.type_ids:
            bad.append((f"{a} || {b}", enc["input_ids"], want.ids))
    add_count(report, f"real pairs ({len(pairs)} MRPC, ids + token types)", name, bad, len(pairs))

    # As fine-tuning feeds them: pairs truncated longest_first and padded to 128.
    ref.enable_truncation(max_length=GLUE_MAX_LENGTH, strategy="longest_first")
    ref.enable_padding(length=GLUE_MAX_LENGTH, pad_id=0, pad_type_id=0, pad_token="[PAD]")
    batch_a, batch_b = [a for a, _ in pairs], [b for _, b in pairs]
    enc = tok(batch_a, batch_b, truncation="longest_first", max_length=GLUE_MAX_LENGTH, padding="max_length")
    want = ref.encode_batch(list(zip(batch_a, batch_b)))
    bad = []
    for i, w in enumerate(want):
        if (enc["input_ids"][i], enc["token_type_ids"][i], enc["attention_mask"][i]) != (w.ids, w.type_ids, w.attention_mask):
            bad.append((f"{batch_a[i]} || {batch_b[i]}", enc["input_ids"][i], w.ids))
    add_count(report, f"GLUE batch ({len(pairs)} pairs, truncate + pad to {GLUE_MAX_LENGTH})", name, bad, len(pairs),
              "input_ids, token_type_ids, attention_mask")


def slow_tokenizer(exported):
    """The pure-Python WordPiece tokenizer from vocab.txt + tokenizer_config.json, or (None, why)."""
    import transformers

    if hasattr(transformers, "BertTokenizerLegacy"):  # 5.x: BertTokenizer is tokenizers-backed
        slow, _ = quiet_load(transformers.BertTokenizerLegacy.from_pretrained, exported, trust_remote_code=True)
        return slow, "BertTokenizerLegacy"
    from transformers import AutoTokenizer

    slow, _ = quiet_load(AutoTokenizer.from_pretrained, exported, use_fast=False, trust_remote_code=True)
    if getattr(slow, "is_fast", False):
        return None, f"use_fast=False gave a fast tokenizer ({type(slow).__name__})"
    return slow, type(slow).__name__


def check_slow(report, tok, exported, singles, pairs):
    slow, name = slow_tokenizer(exported)
    if slow is None:
        report.skip("slow WordPiece (vocab.txt) vs AutoTokenizer", name)
        return
    bad = [(t, slow(t)["input_ids"], tok(t)["input_ids"]) for t in singles]
    bad = [b for b in bad if b[1] != b[2]]
    bad_pairs = []
    for a, b in pairs:
        # 5.x's legacy tokenizer leaves token types out unless asked.
        s, f = slow(a, b, return_token_type_ids=True), tok(a, b, return_token_type_ids=True)
        if s["input_ids"] != f["input_ids"] or s["token_type_ids"] != f["token_type_ids"]:
            bad_pairs.append((f"{a} || {b}", s["input_ids"], f["input_ids"]))
    add_count(report, f"slow {name} (vocab.txt) on real sentences + pairs", "AutoTokenizer (tokenizer.json)",
              bad + bad_pairs, len(singles) + len(pairs), "vocab.txt + tokenizer_config.json agree with tokenizer.json")


def run(ctx, report):
    from transformers import AutoTokenizer

    workdir = ctx.scratch(NAME)
    exported = ctx.berthash.export(GOLDEN_TINY / "base", workdir / "export")

    tok, noise = quiet_load(AutoTokenizer.from_pretrained, exported, trust_remote_code=True)
    report.add("AutoTokenizer loads from export", bool(getattr(tok, "is_fast", False)) and len(tok) == 30522,
               f"{type(tok).__name__}, {len(tok)} ids", "fast tokenizer, 30522 ids", "exact",
               f"model_max_length {tok.model_max_length}" + (" | logged: " + noise[0][:100] if noise else ""))

    singles, pairs = glue_texts(ctx.repo)
    extra = parquet_texts(ctx.repo)
    fixture_path = ctx.repo / FIXTURE
    fixture = json.loads(fixture_path.read_text(encoding="utf-8")) if fixture_path.exists() else None

    report.section = f"{NAME} Rust (berthash tokenize)"
    if has_tokenize(ctx.berthash):
        rust_singles = [i["text"] for i in fixture["singles"]] if fixture else []
        rust_pairs = [(i["a"], i["b"]) for i in fixture["pairs"]] if fixture else []
        names = ("fixture + " if fixture else "") + f"{len(singles)} SST-2" + (f" + {len(extra)} data/sample" if extra else "")
        check_berthash_tokenize(ctx, report, tok, exported, rust_singles + singles + (extra or []),
                                rust_pairs + pairs, (names, ("fixture + " if fixture else "") + f"{len(pairs)} MRPC"))
        check_shared_glue(ctx, report, tok, exported)
    else:
        report.skip("berthash tokenize", "this berthash has no `tokenize` subcommand: the Rust side is covered only by "
                    "the data crate's expected-ids fixture below (" + rust_side_note(ctx) + ")")

    report.section = f"{NAME} vs data-crate fixture"
    if fixture is None:
        report.skip("fixture", f"{FIXTURE} not found")
    else:
        check_fixture(report, tok, ctx.repo)

    report.section = f"{NAME} vs tokenizers library"
    check_reference_library(report, tok, ctx.repo, singles, pairs, extra)
    if extra is None:
        report.skip("data/sample parquet texts", "pyarrow is not installed in this venv (GLUE tsv sentences only)")

    report.section = f"{NAME} slow vs fast"
    check_slow(report, tok, exported, singles + (extra or []), pairs)
