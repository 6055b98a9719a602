//! Retrieval quality on the labelled set (`fixtures/retrieval_set.json`): two tenants'
//! knowledge and 62 customer questions, most paraphrased, each labelled with the entry
//! that answers it. hit@3 and MRR for semantic, keyword and hybrid search through the
//! search service, with the local model, and no hit from the other tenant.

use std::collections::HashMap;

use fibonacco_api::testing::TestApp;
use fibonacco_platform::TenantId;
use fibonacco_search::{
    embed::local::MiniLm,
    rank::{Fusion, fuse},
    service::SearchRequest,
};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::support::{embed, entry};

#[derive(Deserialize)]
struct Set {
    entries: HashMap<String, Vec<Entry>>,
    questions: Vec<Question>,
}

#[derive(Deserialize)]
struct Entry {
    title: String,
    category: String,
    content: String,
}

#[derive(Deserialize)]
struct Question {
    tenant: String,
    q: String,
    expect: String,
}

/// hit@3 and mean reciprocal rank (0 past the tenth hit) over the questions.
#[derive(Debug, Default, Clone, Copy)]
struct Quality {
    hit3: f64,
    mrr: f64,
}

impl Quality {
    fn of(ranks: &[Option<usize>]) -> Self {
        let n = ranks.len() as f64;
        Self {
            hit3: ranks.iter().filter(|r| matches!(r, Some(r) if *r <= 3)).count() as f64 / n,
            mrr: ranks.iter().map(|r| r.filter(|r| *r <= 10).map_or(0.0, |r| 1.0 / r as f64)).sum::<f64>() / n,
        }
    }
}

fn rank_of(list: &[Uuid], want: Uuid) -> Option<usize> {
    list.iter().position(|id| *id == want).map(|i| i + 1)
}

#[tokio::test]
async fn labelled_questions_rank_their_answers() {
    let set: Set = serde_json::from_str(include_str!("../fixtures/retrieval_set.json")).unwrap();
    let app = TestApp::spawn().await;
    let model = MiniLm::load(&MiniLm::default_dir()).expect("run scripts/models.sh");
    let tenants: HashMap<&str, (TenantId, &str)> =
        HashMap::from([("a", (app.tenant_a, app.token_a.as_str())), ("b", (app.tenant_b, app.token_b.as_str()))]);
    // (tenant, title) → id, and which tenant owns each id.
    let mut ids: HashMap<(String, String), Uuid> = HashMap::new();
    let mut owner: HashMap<Uuid, String> = HashMap::new();
    for (t, entries) in &set.entries {
        let (tenant, token) = tenants[t.as_str()];
        let mut made = Vec::new();
        for e in entries {
            let body = json!({"title": e.title, "content": e.content, "category": e.category});
            made.push(entry(&app, token, body).await);
        }
        let refs: Vec<&str> = made.iter().map(String::as_str).collect();
        embed(&app, tenant, &model, &refs).await;
        for (e, id) in entries.iter().zip(&made) {
            let id = Uuid::parse_str(id).unwrap();
            ids.insert((t.clone(), e.title.clone()), id);
            owner.insert(id, t.clone());
        }
    }
    let svc = app.state.search.clone().with_embedder(std::sync::Arc::new(model.clone()));
    let run = |tenant: TenantId, q: &str, mode: &str, per_page: i64| {
        let svc = svc.clone();
        let request = SearchRequest {
            q: Some(q.to_owned()),
            mode: Some(mode.into()),
            per_page: Some(per_page),
            ..Default::default()
        };
        async move { svc.search(tenant, request).await.unwrap().0.hits }
    };

    // Other fusions over the same two rankings, for the comparison in docs/metrics.md.
    let ratios = [0.5, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0];
    let mut variants: Vec<(String, Fusion)> = vec![("rrf k=60".into(), Fusion::Rrf { k: 60.0, semantic_weight: 0.5 })];
    variants.extend(ratios.iter().map(|r| (format!("relative {r}"), Fusion::Relative { semantic_ratio: *r })));
    let mut ranks: HashMap<String, Vec<Option<usize>>> = HashMap::new();
    for question in &set.questions {
        let (tenant, _) = tenants[question.tenant.as_str()];
        let want = ids[&(question.tenant.clone(), question.expect.clone())];
        let semantic = run(tenant, &question.q, "semantic", 30).await;
        let keyword = run(tenant, &question.q, "keyword", 30).await;
        let hybrid = run(tenant, &question.q, "hybrid", 10).await;
        for (mode, hits) in [("semantic", &semantic), ("keyword", &keyword), ("hybrid", &hybrid)] {
            for h in hits.iter() {
                assert_eq!(
                    owner.get(&h.id),
                    Some(&question.tenant),
                    "{mode} `{}` found another tenant's entry",
                    question.q
                );
            }
            let list: Vec<Uuid> = hits.iter().map(|h| h.id).collect();
            ranks.entry(mode.into()).or_default().push(rank_of(&list, want));
        }
        let sem: Vec<(Uuid, f64)> = semantic.iter().map(|h| (h.id, h.semantic_score.unwrap())).collect();
        let key: Vec<(Uuid, f64)> = keyword.iter().map(|h| (h.id, h.keyword_score.unwrap())).collect();
        for (name, f) in &variants {
            let fused: Vec<Uuid> = fuse(*f, &sem, &key).into_iter().map(|(id, _)| id).collect();
            ranks.entry(name.clone()).or_default().push(rank_of(&fused, want));
        }
    }
    let quality: HashMap<&str, Quality> = ranks.iter().map(|(k, r)| (k.as_str(), Quality::of(r))).collect();
    let mut names: Vec<&str> = quality.keys().copied().collect();
    names.sort();
    for name in names {
        let q = quality[name];
        eprintln!("{name:>16}: hit@3 {:.3}  MRR {:.3}", q.hit3, q.mrr);
    }
    let (semantic, keyword, hybrid) = (quality["semantic"], quality["keyword"], quality["hybrid"]);
    assert!(semantic.hit3 >= 0.8 && semantic.mrr >= 0.7, "semantic {semantic:?}");
    assert!(keyword.hit3 >= 0.3, "keyword {keyword:?}");
    assert!(
        hybrid.hit3 >= semantic.hit3.max(keyword.hit3) && hybrid.mrr >= semantic.mrr.max(keyword.mrr),
        "hybrid {hybrid:?} is below its best part: semantic {semantic:?}, keyword {keyword:?}"
    );

    // The ratio is the caller's: 1 ranks by meaning, 0 by the words, outside 0..1 is a 422.
    let question = "my electric bike doesn't hold its charge anymore";
    let with_ratio = |ratio: f64| {
        let svc = svc.clone();
        let request = SearchRequest {
            q: Some(question.into()),
            semantic_ratio: Some(ratio),
            per_page: Some(5),
            ..Default::default()
        };
        async move { svc.search(app.tenant_b, request).await.unwrap().0 }
    };
    let ids = |hits: &[fibonacco_search::knowledge::Hit]| hits.iter().map(|h| h.id).collect::<Vec<_>>();
    let meaning = with_ratio(1.0).await;
    assert_eq!(meaning.semantic_ratio, Some(1.0));
    assert_eq!(ids(&meaning.hits), ids(&run(app.tenant_b, question, "semantic", 5).await));
    let words = with_ratio(0.0).await;
    let keyword = run(app.tenant_b, question, "keyword", 5).await;
    assert_eq!(ids(&words.hits)[0], keyword[0].id, "the best keyword hit leads");
    for bad in ["1.5", "-0.1", "NaN", "x"] {
        let (status, body) = app.get(&format!("/api/v1/search?q=bike&semantic_ratio={bad}"), &app.token_b).await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
}
