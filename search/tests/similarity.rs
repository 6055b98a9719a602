//! The local embedder reproduces sentence-transformers: the similarity matrix that the
//! sentence-transformers quickstart prints for all-MiniLM-L6-v2.

use fibonacco_search::embed::{cosine, local::MiniLm};

#[test]
fn matches_sentence_transformers_similarities() {
    let model = MiniLm::load(&MiniLm::default_dir()).expect("model present: run scripts/models.sh (make test does)");
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
            assert!((got - expected[i][j]).abs() < 1e-3, "sim({i},{j}) = {got}, expected {}", expected[i][j]);
        }
    }
    // Batching and padding do not change a text's vector.
    let alone = model.embed_blocking(&sentences[2..]).unwrap();
    assert!(cosine(&alone[0], &v[2]) > 0.99999);
}

#[test]
fn long_inputs_keep_their_order() {
    let model = MiniLm::load(&MiniLm::default_dir()).expect("model present: run scripts/models.sh (make test does)");
    // More than one batch, lengths mixed so sorting by length reorders them.
    let texts: Vec<String> =
        (0..70).map(|i| format!("text {i} {}", "about refunds and opening hours ".repeat(i % 7))).collect();
    let all = model.embed_blocking(&texts).unwrap();
    for i in [0, 13, 45, 69] {
        let alone = model.embed_blocking(&texts[i..=i]).unwrap();
        assert!(cosine(&alone[0], &all[i]) > 0.99999, "text {i} moved");
    }
}
