//! BertEmbedder behaviour on a tiny random BERT (no real weights needed).
// Runs the BERT backend: built only with the `candle` feature.
#![cfg(feature = "candle")]

use crate::common::{max_abs_diff, norm, tiny, token_counts, token_ids, Tiny, TINY_HIDDEN};
use membatch::{BertEmbedder, EmbedOptions, Embedder, Error, ModelSource, Pooling};

#[test]
fn empty_input_gives_empty_output() {
    let (_d, e) = tiny(&Tiny::default());
    assert!(e.embed(&[]).unwrap().is_empty());
    assert!(token_counts(&e, &[]).is_empty());
    assert_eq!(e.info().dimension, TINY_HIDDEN);
}

#[test]
fn empty_and_whitespace_texts_are_cls_sep_and_embed_alike() {
    let (_d, e) = tiny(&Tiny::default());
    let texts = ["", " ", "  \t\n ", "\n"];
    assert_eq!(token_counts(&e, &texts), vec![2, 2, 2, 2]);
    let v = e.embed(&texts).unwrap();
    for other in &v[1..] {
        assert!(max_abs_diff(&v[0], other) <= 1e-6);
    }
    assert!((norm(&v[0]) - 1.0).abs() < 1e-5);
}

#[test]
fn the_tokenizer_files_own_truncation_and_padding_are_replaced() {
    // The tiny tokenizer.json says truncate at 8 and pad to 16, as the real
    // all-MiniLM-L6-v2 file says 128; the model's max_seq_length (24) rules.
    let (_d, e) = tiny(&Tiny::default());
    let ten_words = "the quick brown fox is eating the food hello world";
    assert_eq!(token_counts(&e, &["hello", ten_words]), vec![3, 12]);
    let ids = token_ids(&e, &["hello"]);
    assert_eq!(ids, vec![vec![2, 5, 3]]);
}

#[test]
fn long_texts_are_truncated_at_max_seq_length() {
    let (_d, e) = tiny(&Tiny::default());
    let megabyte = "hello world ".repeat(90_000);
    assert!(megabyte.len() > 1_000_000);
    assert_eq!(token_counts(&e, &[&megabyte]), vec![24]);
    let v = e.embed(&[&megabyte]).unwrap();
    assert!(v[0].iter().all(|x| x.is_finite()));
}

#[test]
fn a_text_embeds_the_same_alone_and_batched_with_longer_texts() {
    for pooling in ["mean", "cls", "max"] {
        let (_d, e) = tiny(&Tiny {
            pooling: pooling.into(),
            ..Tiny::default()
        });
        let long = "the quick brown fox is eating the food ".repeat(10);
        let short = "hello world";
        let alone = e.embed(&[short]).unwrap();
        let batched = e.embed(&[&long, short, "a man", &long]).unwrap();
        let d = max_abs_diff(&alone[0], &batched[1]);
        assert!(d <= 1e-5, "{pooling}: padding changed the embedding by {d}");
    }
}

#[test]
fn pooling_follows_the_models_config() {
    // One set of weights; only 1_Pooling/config.json changes between loads.
    let dir = crate::common::tiny_model_dir(&Tiny::default());
    let text = ["the quick brown fox"];
    let mut outs = Vec::new();
    for (flag, want) in [
        ("pooling_mode_mean_tokens", Pooling::Mean),
        ("pooling_mode_cls_token", Pooling::Cls),
        ("pooling_mode_max_tokens", Pooling::Max),
    ] {
        crate::common::write(
            dir.path(),
            "1_Pooling/config.json",
            &format!(r#"{{"{flag}": true}}"#),
        );
        let e = BertEmbedder::load(ModelSource::dir(dir.path())).unwrap();
        assert_eq!(e.settings().pooling, want);
        let v = e.embed(&text).unwrap().remove(0);
        assert!((norm(&v) - 1.0).abs() < 1e-5);
        outs.push(v);
    }
    for i in 0..3 {
        for j in i + 1..3 {
            assert!(
                max_abs_diff(&outs[i], &outs[j]) > 1e-3,
                "poolings {i} and {j} agree"
            );
        }
    }
}

#[test]
fn normalisation_follows_modules_json_and_can_be_overridden() {
    let dir = crate::common::tiny_model_dir(&Tiny {
        normalize: false,
        ..Tiny::default()
    });
    let plain = BertEmbedder::load(ModelSource::dir(dir.path())).unwrap();
    assert!(!plain.settings().normalize);
    let forced = BertEmbedder::builder()
        .source(ModelSource::dir(dir.path()))
        .normalize(true)
        .build()
        .unwrap();
    let text = ["a man is eating food"];
    let raw = plain.embed(&text).unwrap().remove(0);
    let unit = forced.embed(&text).unwrap().remove(0);
    let n = norm(&raw);
    assert!(
        (n - 1.0).abs() > 1e-3,
        "mean-pooled raw vector should not be unit length"
    );
    let scaled: Vec<f32> = raw.iter().map(|x| x / n).collect();
    assert!(max_abs_diff(&scaled, &unit) <= 1e-5);
}

#[test]
fn matryoshka_dimensions_are_the_first_values_normalised_again() {
    let text = ["a man is eating food", "the quick brown fox"];
    for normalize in [true, false] {
        let dir = crate::common::tiny_model_dir(&Tiny {
            normalize,
            ..Tiny::default()
        });
        let full = BertEmbedder::load(ModelSource::dir(dir.path())).unwrap();
        let all = full.embed(&text).unwrap();
        // Cut by hand: the first 8 values, back to unit length when the
        // model normalises (sentence-transformers' truncate_dim, then
        // normalize_embeddings).
        let cut: Vec<Vec<f32>> = all
            .iter()
            .map(|v| {
                let v = v[..8].to_vec();
                if normalize {
                    let n = norm(&v);
                    v.iter().map(|x| x / n).collect()
                } else {
                    v
                }
            })
            .collect();
        let per_call = full
            .embed_with(&text, &EmbedOptions::new().with_dimensions(8))
            .unwrap();
        let built = BertEmbedder::builder()
            .source(ModelSource::dir(dir.path()))
            .dimensions(8)
            .build()
            .unwrap();
        assert_eq!(built.info().dimension, 8);
        assert_eq!(built.info().normalized, normalize);
        let per_embedder = built.embed(&text).unwrap();
        for i in 0..text.len() {
            assert!(max_abs_diff(&per_call[i], &cut[i]) <= 1e-6, "per call");
            assert!(
                max_abs_diff(&per_embedder[i], &cut[i]) <= 1e-6,
                "per embedder"
            );
        }
        // A call may keep fewer than the embedder, never more.
        let four = built
            .embed_with(&text, &EmbedOptions::new().with_dimensions(4))
            .unwrap();
        assert_eq!(four[0].len(), 4);
        let err = built
            .embed_with(&text, &EmbedOptions::new().with_dimensions(9))
            .unwrap_err();
        assert!(err.to_string().contains("model's dimension (8)"), "{err}");
    }
    for bad in [0, TINY_HIDDEN + 1] {
        let dir = crate::common::tiny_model_dir(&Tiny::default());
        let err = BertEmbedder::builder()
            .source(ModelSource::dir(dir.path()))
            .dimensions(bad)
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidConfig { name, .. } if name == "dimensions"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn texts_behind_different_prompts_share_a_batch_each_pooled_without_its_prompt() {
    let dir = crate::common::tiny_model_dir(&Tiny {
        pooling: format!(
            r#"{{"word_embedding_dimension": {TINY_HIDDEN}, "pooling_mode_mean_tokens": true, "include_prompt": false}}"#
        ),
        ..Tiny::default()
    });
    crate::common::write(
        dir.path(),
        "config_sentence_transformers.json",
        r#"{"prompts": {"query": "the quick ", "document": "a man is "}}"#,
    );
    let e = BertEmbedder::load(ModelSource::dir(dir.path())).unwrap();
    let text = ["hello world"];
    let query = e.tokenize_prompted(&text, Some("query")).unwrap().remove(0);
    let document = e
        .tokenize_prompted(&text, Some("document"))
        .unwrap()
        .remove(0);
    let plain = e.tokenize_prompted(&text, None).unwrap().remove(0);
    // [CLS] + the prompt's words: left out of mean pooling.
    assert_eq!(
        (
            query.pooling_skip(),
            document.pooling_skip(),
            plain.pooling_skip()
        ),
        (3, 4, 0)
    );
    let mixed = e.embed_tokens(&[&query, &plain, &document]).unwrap();
    for (i, t) in [&query, &plain, &document].into_iter().enumerate() {
        let alone = e.embed_tokens(&[t]).unwrap().remove(0);
        assert!(max_abs_diff(&mixed[i], &alone) <= 1e-6, "text {i}");
    }
    assert_eq!(mixed[0], e.embed_with_prompt("query", &text).unwrap()[0]);
    // The skip is what changes the vector: the same tokens pooled whole differ.
    let whole = e
        .embed_tokens(&[&membatch::Tokens::new(query.ids().to_vec())])
        .unwrap()
        .remove(0);
    assert!(max_abs_diff(&whole, &mixed[0]) > 1e-3);
}

#[test]
fn cjk_emoji_and_control_characters_work() {
    let (_d, e) = tiny(&Tiny::default());
    let texts = [
        "東京",
        "🍕🍕 pizza",
        "\u{0}\u{7}hello\u{1b}",
        "caf\u{e9}",
        "👨\u{200d}👩\u{200d}👧",
    ];
    let counts = token_counts(&e, &texts);
    assert_eq!(counts[0], 4, "one token per CJK character");
    assert_eq!(counts[2], 3, "control characters are dropped");
    assert_eq!(counts[3], 3, "accents are stripped: café -> cafe");
    let v = e.embed(&texts).unwrap();
    assert_eq!(v.len(), texts.len());
    assert!(v.iter().flatten().all(|x| x.is_finite()));
}

#[test]
fn a_dedicated_thread_pool_gives_the_same_vectors() {
    let dir = crate::common::tiny_model_dir(&Tiny::default());
    let default = BertEmbedder::load(ModelSource::dir(dir.path())).unwrap();
    let one = BertEmbedder::builder()
        .source(ModelSource::dir(dir.path()))
        .threads(1)
        .build()
        .unwrap();
    assert_eq!(one.threads(), Some(1));
    assert_eq!(default.threads(), None);
    let texts = ["hello world", "the lazy dog is eating", ""];
    let a = default.embed(&texts).unwrap();
    let b = one.embed(&texts).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!(max_abs_diff(x, y) <= 1e-6);
    }
}

#[test]
fn invalid_settings_are_typed_errors() {
    let dir = crate::common::tiny_model_dir(&Tiny::default());
    let build = |b: membatch::BertEmbedderBuilder| b.source(ModelSource::dir(dir.path())).build();
    for (builder, name) in [
        (BertEmbedder::builder().threads(0), "threads"),
        (BertEmbedder::builder().max_seq_length(1), "max_seq_length"),
        (BertEmbedder::builder().max_seq_length(65), "max_seq_length"),
    ] {
        match build(builder) {
            Err(Error::InvalidConfig { name: got, .. }) => assert_eq!(got, name),
            other => panic!("expected InvalidConfig for {name}, got {other:?}"),
        }
    }
    let short = build(BertEmbedder::builder().max_seq_length(4)).unwrap();
    assert_eq!(short.info().max_seq_length, 4);
    assert_eq!(token_counts(&short, &["the quick brown fox"]), vec![4]);
}

#[test]
fn weight_bytes_are_the_resident_weights_and_int8_holds_fewer() {
    let dir = crate::common::tiny_model_dir(&Tiny::default());
    let file = std::fs::metadata(dir.path().join("model.safetensors"))
        .unwrap()
        .len();
    let f32 = BertEmbedder::load(ModelSource::dir(dir.path())).unwrap();
    let bytes = f32.info().weight_bytes.expect("BERT knows its weights");
    // The file holds every tensor as f32 (and a header); the model holds
    // the ones it runs.
    assert!(
        bytes <= file && bytes >= file / 2,
        "{bytes} of a {file}-byte file"
    );
    let int8 = BertEmbedder::builder()
        .source(ModelSource::dir(dir.path()))
        .precision(membatch::Precision::Int8)
        .build()
        .unwrap();
    let small = int8.info().weight_bytes.unwrap();
    assert!(small < bytes / 2, "int8 {small} vs f32 {bytes}");
    // Forwarded through pointers.
    let shared: std::sync::Arc<dyn Embedder> = std::sync::Arc::new(f32);
    assert_eq!(shared.info().weight_bytes, Some(bytes));
}
