//! The local embedder reproduces sentence-transformers on both engines: the similarity
//! matrix that the sentence-transformers quickstart prints for all-MiniLM-L6-v2, and the
//! same vectors from ONNX Runtime as from candle.

use fibonacco_search::embed::{
    cosine,
    local::{MiniLm, Runtime, RuntimeChoice, default_library},
};

fn load(choice: RuntimeChoice) -> MiniLm {
    let dir = MiniLm::default_dir();
    let library = default_library(&dir, |k| std::env::var(k).ok());
    MiniLm::load_with(&dir, choice, &library).expect("model present: run scripts/models.sh (make test does)")
}

#[test]
fn matches_sentence_transformers_similarities() {
    for (choice, runtime) in [(RuntimeChoice::Onnx, Runtime::Onnx), (RuntimeChoice::Candle, Runtime::Candle)] {
        let model = load(choice);
        assert_eq!(model.runtime(), runtime);
        quickstart_similarities(&model);
    }
    // What `EMBEDDING_RUNTIME` unset picks when scripts/models.sh has run: ONNX Runtime.
    assert_eq!(MiniLm::load(&MiniLm::default_dir()).unwrap().runtime(), Runtime::Onnx);
}

fn quickstart_similarities(model: &MiniLm) {
    let sentences: Vec<String> = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
        .map(String::from)
        .to_vec();
    let v = model.embed_blocking(&sentences).unwrap();
    assert!(v.iter().all(|e| e.len() == 384));
    for e in &v {
        let norm: f32 = e.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    }
    // sentence-transformers 3.x, `model.similarity(embeddings, embeddings)`.
    let expected = [[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]];
    for i in 0..3 {
        for j in 0..3 {
            let got = cosine(&v[i], &v[j]);
            assert!(
                (got - expected[i][j]).abs() < 1e-3,
                "{:?}: sim({i},{j}) = {got}, expected {}",
                model.runtime(),
                expected[i][j]
            );
        }
    }
    // Batching and padding do not change a text's vector.
    let alone = model.embed_blocking(&sentences[2..]).unwrap();
    assert!(cosine(&alone[0], &v[2]) > 0.99999);
}

/// Both engines give the same vector for the same text (within 1e-4 cosine), whatever the
/// text: empty, one word, non-ASCII, hostile characters, past the 256-token truncation.
#[test]
fn onnx_runtime_and_candle_agree() {
    let (onnx, candle) = (load(RuntimeChoice::Onnx), load(RuntimeChoice::Candle));
    let texts: Vec<String> = vec![
        String::new(),
        "refunds".into(),
        "Où puis-je garer ma voiture ? 駐車場はありますか".into(),
        "quotes \" ' and\r\nnew lines\t\u{0}".into(),
        "the salon opens at nine ".repeat(80),
        "Balayage is a freehand colouring technique that paints lighter tones onto the hair.".into(),
    ];
    let (a, b) = (onnx.embed_blocking(&texts).unwrap(), candle.embed_blocking(&texts).unwrap());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x.len(), 384);
        let c = cosine(x, y);
        assert!(c > 0.9999, "text {i}: cosine {c} between the engines");
    }
}

#[test]
fn long_inputs_keep_their_order() {
    let model = load(RuntimeChoice::Onnx);
    // More than one batch, lengths mixed so sorting by length reorders them.
    let texts: Vec<String> =
        (0..70).map(|i| format!("text {i} {}", "about refunds and opening hours ".repeat(i % 7))).collect();
    let all = model.embed_blocking(&texts).unwrap();
    for i in [0, 13, 45, 69] {
        let alone = model.embed_blocking(&texts[i..=i]).unwrap();
        assert!(cosine(&alone[0], &all[i]) > 0.99999, "text {i} moved");
    }
}
