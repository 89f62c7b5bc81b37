//! Token ids equal those of the Python `tokenizers` package (fixture produced
//! once by `fixtures/make_expected_ids.py` from the shipped tokenizer.json).

mod common;

use berthash_data::glue::{encode_examples, GlueExample, Padding};
use berthash_data::CorpusSource;
use serde::Deserialize;

#[derive(Deserialize)]
struct Single {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Pair {
    a: String,
    b: Option<String>,
    #[serde(default)]
    max_length: Option<usize>,
    ids: Vec<u32>,
    type_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Expected {
    singles: Vec<Single>,
    pairs: Vec<Pair>,
    truncated_pairs: Vec<Pair>,
}

fn expected() -> Expected {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tokenizer_expected_ids.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn single_texts_match_the_reference_tokenizer() {
    let tok = common::tokenizer();
    let exp = expected();
    assert!(exp.singles.len() >= 100, "{} texts", exp.singles.len());
    let texts: Vec<&str> = exp.singles.iter().map(|s| s.text.as_str()).collect();
    let batch = tok.encode_batch(&texts, true).unwrap();
    for (s, got) in exp.singles.iter().zip(&batch) {
        assert_eq!(got, &s.ids, "text {:?}", s.text);
        assert_eq!(
            tok.encode_uncached(&s.text, true).unwrap(),
            s.ids,
            "uncached {:?}",
            s.text
        );
    }
}

#[test]
fn pairs_and_truncation_match_the_reference_tokenizer() {
    let tok = common::tokenizer();
    let exp = expected();
    let check = |pairs: &[Pair], default_max: usize| {
        for p in pairs {
            let ex = GlueExample {
                text_a: p.a.clone(),
                text_b: p.b.clone(),
                label: None,
            };
            let max = p.max_length.unwrap_or(default_max);
            let enc = encode_examples(&tok, &[ex], max, Padding::Longest).unwrap();
            let e = &enc.examples[0];
            assert_eq!(e.input_ids, p.ids, "{:?} / {:?} (max {max})", p.a, p.b);
            assert_eq!(e.token_type_ids, p.type_ids, "{:?} / {:?}", p.a, p.b);
        }
    };
    check(&exp.pairs, 100_000);
    check(&exp.truncated_pairs, 0);
}

#[test]
fn piece_cache_is_exact_on_the_whole_sample_corpus() {
    let tok = common::tokenizer();
    let cfg = berthash_data::CorpusConfig::new(vec![
        CorpusSource::new(&[&common::wiki_sample()]),
        CorpusSource::new(&[&common::books_sample()]),
    ]);
    let lanes = cfg.lanes(&cfg.resolve().unwrap()).unwrap();
    let start = vec![Default::default(); 2];
    let stream = berthash_data::CorpusStream::new(&cfg, &lanes, &start, Default::default());
    let texts: Vec<String> = stream
        .map(|d| d.unwrap().content.text().unwrap().to_string())
        .collect();
    assert_eq!(texts.len(), 6300);
    let fast = tok.encode_batch(&texts, true).unwrap();
    for (text, ids) in texts.iter().zip(&fast) {
        assert_eq!(ids, &tok.encode_uncached(text, true).unwrap(), "{text:?}");
    }
}
